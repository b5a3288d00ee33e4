#!/usr/bin/env bash
# make demo: roll the example fleet out on twin FreeBSD/OPNsense hosts while traffic flows.
#
# 1. validate and plan the spec (what a CI pipeline runs);
# 2. start one twin host per spec host and a traffic generator on each (short flows and flows
#    that live tens of seconds, so that a remap during the run would show);
# 3. ansible-playbook divert.fleet.site: consumers bound before any rule diverts, rules loaded
#    in one transaction, a per-host summary;
# 4. run it again: nothing changes;
# 5. the twin's report: a table (per host: packets, diverted, every loss counter, the groups) and
#    the totals; the full report as JSON in a file (DIVERT_FLEET_DEMO_REPORT, default
#    tests/output/demo-report.json); and, as the last line, a one-line summary. Every loss
#    counter must be 0 (dropped_noport, dropped_nodivert, dropped_full, swallowed,
#    flows_remapped, flows_undiverted, incomplete_loads, withdraw_violations): the demo exits
#    non-zero otherwise, and when the traffic generator failed.
set -euo pipefail
cd "$(dirname "$0")/.."
spec="${DIVERT_FLEET_DEMO_SPEC:-examples/fleet.yml}"
report="${DIVERT_FLEET_DEMO_REPORT:-$PWD/tests/output/demo-report.json}"
root="$(mktemp -d /tmp/divert-fleet-demo.XXXXXX)"
py=.venv/bin/python
twinctl() { "$py" tests/twin/twinctl "$1" --root "$root" "${@:2}"; }
cleanup() { twinctl down >/dev/null 2>&1 || true; rm -rf "$root"; }
trap cleanup EXIT

echo "== divert-fleet validate $spec"
.venv/bin/divert-fleet validate "$spec"
echo "== divert-fleet plan $spec"
.venv/bin/divert-fleet plan "$spec"
echo "== twin hosts and traffic"
"$py" tests/twin/fleetctl up --root "$root" --spec "$spec"
twinctl traffic start
echo "== ansible-playbook divert.fleet.site (first run: rolls out)"
ANSIBLE_DISPLAY_OK_HOSTS=true ansible-playbook divert.fleet.site -i "$root/inventory.yml" -e "fleet_spec=$spec"
echo "== ansible-playbook divert.fleet.site (second run: changes nothing)"
ansible-playbook divert.fleet.site -i "$root/inventory.yml" -e "fleet_spec=$spec" | sed -n '/PLAY RECAP/,$p'
twinctl traffic stop
echo "== twin report"
mkdir -p "$(dirname "$report")"
status=0
out="$(twinctl report --format table --drain --output "$report" --fail-on-loss)" || status=$?
printf '%s\n' "$out" | sed '$d'
echo "full report (JSON): $report"
printf '%s\n' "$out" | tail -n 1
exit "$status"
