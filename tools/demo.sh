#!/usr/bin/env bash
# make demo: roll the example fleet out on twin FreeBSD/OPNsense hosts while traffic flows.
#
# 1. validate and plan the spec (what a CI pipeline runs);
# 2. start one twin host per spec host and a traffic generator on each;
# 3. ansible-playbook divert.fleet.site: consumers bound before any rule diverts, rules loaded
#    in one transaction, a per-host summary;
# 4. run it again: nothing changes;
# 5. the last line is the twin's report as one JSON object: what the ordering invariants forbid
#    (dropped_noport, dropped_hole, flows_remapped, incomplete_loads) must all be 0.
set -euo pipefail
cd "$(dirname "$0")/.."
spec="${DIVERT_FLEET_DEMO_SPEC:-examples/fleet.yml}"
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
twinctl report --format json --drain
