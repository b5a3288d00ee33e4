# -*- coding: utf-8 -*-
"""Day-2 changes on twin hosts under traffic with long-lived flows (design I2, I5, I6).

One fleet, one host per kind of change, so that each `site.yml` run changes every host at once
and its drains overlap: resize with a standby port both ways (7 -> 5 -> 9), restart of a Suricata
for an rc_vars change with a standby port, a reload-only change (SIGUSR2, no rebind), removal of a
consumer and of a rule, a refusal (no standby port, no permission) and a next group that binds only
some of its sockets. Every loss counter of the twin's report stays at 0 on every host, the failed
hosts included: where the design says nothing is lost, nothing is.

Long-lived flows live 6-12 s here (the twin's default is 20-60 s) so that a drain, which waits for
every pf state the old rules created, fits a test run; they still span every switch.
"""

import json
import os
import threading

import pytest
import yaml

from rollout_helpers import (
    LOSS, edit, fleet_up, growth, host_call, needs_twin, on_host, recap, report, site, twinctl)

pytestmark = needs_twin

RULES_FILE = "/usr/local/etc/suricata/rules/local.rules"
SPEC = {
    "version": 1,
    "consumers": {
        "rsz": {"description": "the reference consumer, resized with a standby port", "port": 8100,
                "standby_port": 8101, "sockets": 7, "service": "rsz", "driver": "reflector",
                "ready_timeout": 20, "drain_timeout": 60},
        "rst": {"description": "Suricata from ports, restarted for an rc_vars change", "port": 8200,
                "standby_port": 8201, "sockets": 3, "service": "suricata", "driver": "suricata",
                "rc_vars": {"suricata_flags": "-D"}, "ready_timeout": 20, "drain_timeout": 60},
        "rld": {"description": "Suricata from ports whose rules change (a reload)", "port": 8300,
                "standby_port": 8301, "sockets": 2, "service": "suricata", "driver": "suricata",
                "watch": {"reload": [RULES_FILE]}, "ready_timeout": 20, "drain_timeout": 60},
        "keep": {"port": 8400, "sockets": 2, "service": "keep", "driver": "reflector", "ready_timeout": 20},
        "gone": {"description": "removed from the spec", "port": 8410, "sockets": 2, "service": "gone",
                 "driver": "reflector", "ready_timeout": 20, "drain_timeout": 60},
        "nsb": {"description": "no standby port", "port": 8600, "sockets": 2, "service": "nsb",
                "driver": "reflector", "ready_timeout": 20},
        "flt": {"description": "its next group binds only some sockets", "port": 8700, "standby_port": 8701,
                "sockets": 4, "service": "flt", "driver": "reflector", "ready_timeout": 5, "drain_timeout": 60},
        "old": {"description": "replaced by another consumer on its port", "port": 8500, "sockets": 2,
                "service": "old", "driver": "reflector", "ready_timeout": 20, "drain_timeout": 60},
        "new": {"description": "replaces old on its port", "port": 8500, "standby_port": 8501, "sockets": 3,
                "service": "new", "driver": "reflector", "ready_timeout": 20, "drain_timeout": 60},
        "mov": {"description": "moved to another port", "port": 8900, "standby_port": 8901, "sockets": 2,
                "service": "mov", "driver": "reflector", "ready_timeout": 20, "drain_timeout": 60},
        "named": {"description": "renamed in the spec", "port": 8800, "sockets": 2, "service": "nmd",
                  "driver": "reflector", "ready_timeout": 20},
    },
    "hosts": {},
    "pf": {"anchor": "divert_fleet"},
}
WEB = {"interface": "igb0", "direction": "in", "protocol": "tcp", "to_ports": [80, 443]}
for _host, _consumers in (("d2-resize", ["rsz"]), ("d2-restart", ["rst"]), ("d2-reload", ["rld"]),
                          ("d2-remove", ["keep", "gone"]), ("d2-refuse", ["nsb"]), ("d2-fault", ["flt"]),
                          ("d2-replace", ["old"]), ("d2-rename", ["named"]),
                          ("d2-move", ["mov"])):
    SPEC["hosts"][_host] = {"backend": "pf", "platform": "freebsd", "consumers": _consumers,
                            "rules": [dict(WEB, name="web-%s" % _consumers[0], consumer=_consumers[0])]}
SPEC["hosts"]["d2-remove"]["rules"] += [
    {"name": "dns-keep", "consumer": "keep", "interface": "igb0", "protocol": "udp", "to_ports": [53]},
    {"name": "ssh-gone", "consumer": "gone", "interface": "igb1", "protocol": "tcp", "to_ports": [22]}]
HOSTS = sorted(SPEC["hosts"])
FORKS = {"ANSIBLE_FORKS": str(len(HOSTS) + 2)}


def anchor(root, host):
    return on_host(root, host, "pfctl", "-a", "divert_fleet", "-s", "rules")


def groups(root, host):
    return host_call(root, host, op="state")["groups"]


def pidfile(root, host, name):
    return on_host(root, host, "cat", "/var/run/%s.pid" % name).strip()


def suricata(root, host, instance="suricata"):
    text = on_host(root, host, "cat", "/var/run/suricata-twin/%s.json" % instance)
    return json.loads(text) if text else {}


def expect(root, host, port, sockets):
    twinctl(root, "expect", "--host", host, "--port", str(port), "--sockets", str(sockets))


def unchanged(before, after):
    """Hosts whose loss counters did not move between two reports: {host: growth} of the others."""
    return dict((host, grew) for host, grew in growth(before, after).items() if any(grew.values()))


@pytest.fixture(scope="module")
def day2(tmp_path_factory):
    """The fleet, its first rollout under traffic, and the spec files of the later steps."""
    root = str(tmp_path_factory.mktemp("day2"))
    spec = os.path.join(root, "fleet.yml")
    with open(spec, "w") as handle:
        yaml.safe_dump(SPEC, handle, sort_keys=False)
    fleet_up(root, spec)
    try:
        for host in ("d2-restart", "d2-reload"):
            # more than one listener on a port needs a Suricata built with OPNsense's LB patch
            twinctl(root, "suricata", "--host", host, "--lb-patch", "on", "--load-seconds", "1")
        on_host(root, "d2-reload", "sh", "-c", "mkdir -p %s && echo 'alert tcp any any -> any 80 (sid:1;)' > %s"
                % (os.path.dirname(RULES_FILE), RULES_FILE))
        twinctl(root, "traffic", "start", "--rate", "12", "--long-share", "0.25", "--long-duration", "6:12")
        first = site(root, spec, **FORKS)
        assert first.returncode == 0, first.stdout[-4000:]
        yield {"root": root, "spec": spec, "first": report(root)}
    finally:
        twinctl(root, "down")


def test_first_rollout_of_the_day2_fleet_loses_nothing(day2):
    first = day2["first"]
    assert all(first["hosts"][h]["diverted"] > 0 for h in HOSTS), dict((h, first["hosts"][h]["diverted"]) for h in HOSTS)
    assert dict((k, first[k]) for k in LOSS) == dict.fromkeys(LOSS, 0)


@pytest.fixture(scope="module")
def changed(day2):
    """One run changing every host at once: what the host runs before, the run, and the report."""
    root, spec = day2["root"], day2["spec"]
    before = {
        "report": report(root),
        "rules": dict((h, anchor(root, h)) for h in HOSTS),
        "groups": dict((h, groups(root, h)) for h in HOSTS),
        "slots": host_call(root, "d2-reload", op="state")["slots"],
        "rld_pid": suricata(root, "d2-reload")["pid"],
        "keep_pid": pidfile(root, "d2-remove", "keep"),
        "nsb_pid": pidfile(root, "d2-refuse", "nsb"),
        "nmd_pid": pidfile(root, "d2-rename", "nmd"),
        "rc_conf": dict((h, on_host(root, h, "cat", "/etc/rc.conf")) for h in HOSTS),
        "record": dict((h, on_host(root, h, "cat", "/var/db/divert_fleet/consumers.json")) for h in HOSTS),
    }

    def change(d):
        d["consumers"]["rsz"]["sockets"] = 5                                  # 7 -> 5, onto 8101
        d["consumers"]["rst"]["rc_vars"]["suricata_flags"] = "-D -v"          # a restart, onto 8201
        d["hosts"]["d2-remove"]["consumers"] = ["keep"]                       # gone: removed
        d["hosts"]["d2-remove"]["rules"] = d["hosts"]["d2-remove"]["rules"][:1]   # dns-keep: removed
        d["consumers"]["nsb"]["sockets"] = 3                                  # refused: no standby port
        d["consumers"]["flt"]["sockets"] = 6                                  # binds 3 of 6
        d["hosts"]["d2-replace"]["consumers"] = ["new"]                       # new takes old's port 8500
        d["hosts"]["d2-replace"]["rules"][0]["consumer"] = "new"
        d["consumers"]["renamed"] = d["consumers"].pop("named")               # a new name only
        d["consumers"]["mov"].update(port=8905, standby_port=8906)            # a port move, beside on 8906
        d["hosts"]["d2-rename"]["consumers"] = ["renamed"]
        d["hosts"]["d2-rename"]["rules"][0]["consumer"] = "renamed"
    step1 = edit(spec, change, spec + ".step1.yml")
    on_host(root, "d2-reload", "sh", "-c", "echo 'alert tcp any any -> any 443 (sid:2;)' >> %s" % RULES_FILE)
    expect(root, "d2-resize", 8101, 5)
    expect(root, "d2-restart", 8201, 3)
    expect(root, "d2-fault", 8701, 6)
    expect(root, "d2-replace", 8501, 3)
    expect(root, "d2-move", 8906, 2)
    twinctl(root, "fault", "--host", "d2-fault", "--service", "flt_standby", "--bind-only", "3")
    result = site(root, step1, **FORKS)
    twinctl(root, "fault", "--host", "d2-fault", "--service", "flt_standby", "--clear")
    return dict(root=root, before=before, result=result, after=report(root), step1=step1)


def test_a_day2_run_changes_each_host_as_one_unit_and_loses_nothing(changed):
    """I6 and every loss counter: the run fails for the refused and the faulty host only, names them,
    and no loss counter moves on any host, those two included."""
    out = changed["result"].stdout
    counts = recap(out)
    assert changed["result"].returncode != 0
    assert counts["d2-refuse"]["failed"] == 1 and counts["d2-fault"]["failed"] == 1, counts
    for host in ("d2-resize", "d2-restart", "d2-reload", "d2-remove", "d2-replace", "d2-rename", "d2-move"):
        assert counts[host]["failed"] == 0 and counts[host]["changed"] >= 1, (host, counts, out[-4000:])
    assert "d2-refuse failed" in out and "d2-fault failed" in out
    moved = unchanged(changed["before"]["report"], changed["after"])
    assert not moved, (moved, dict((h, dict((k, v) for k, v in changed["after"]["hosts"][h].items()
                                            if k.endswith("_details") and v)) for h in moved))
    assert all(changed["after"]["hosts"][h]["diverted"] > changed["before"]["report"]["hosts"][h]["diverted"]
               for h in HOSTS)


def test_resize_down_with_a_standby_port_switches_to_it(changed):
    """I5: 7 -> 5 binds the next group on the standby port, the rules switch to it, the old group
    drains and stops; the live port is shown."""
    root = changed["root"]
    assert groups(root, "d2-resize") == {"8101": 5}
    assert "divert-to 8101" in anchor(root, "d2-resize") and "divert-to 8100" not in anchor(root, "d2-resize")
    out = changed["result"].stdout
    assert "port 8100, serving on 8101 (rsz): 5 of 5 sockets bound" in out
    assert "draining port(s) 8100" in out or "port(s) 8100 drained" in out


def test_restart_for_an_rc_vars_change_runs_the_standby_suricata(changed):
    """I5 for a configuration change: the standby instance (the collection's rc.d script, the port's
    Suricata) binds 8201 with the new flags, then the port's instance on 8200 stops."""
    root = changed["root"]
    assert groups(root, "d2-restart") == {"8201": 3}
    standby = suricata(root, "d2-restart", "suricata_standby")
    assert standby["state"] == "running" and "-v" in standby["argv"] and standby["ports"] == [8201] * 3
    assert suricata(root, "d2-restart")["state"] == "stopped"
    assert "divert-to 8201" in anchor(root, "d2-restart")
    rc_conf = on_host(root, "d2-restart", "cat", "/etc/rc.conf")
    assert 'suricata_standby_flags="-D -v -d 8201 -d 8201"' in rc_conf and "suricata_divertport" not in rc_conf
    assert "port 8200, serving on 8201 (rst): 3 of 3 sockets bound" in changed["result"].stdout


def test_a_rules_change_is_a_reload_and_nothing_rebinds(changed):
    """I5: only a watch.reload file changed: SIGUSR2 to the running Suricata; the same process, the same
    sockets in the same slots, no standby instance."""
    root = changed["root"]
    stats = suricata(root, "d2-reload")
    assert stats["pid"] == changed["before"]["rld_pid"] and stats["reloads"] == 1
    assert host_call(root, "d2-reload", op="state")["slots"] == changed["before"]["slots"]
    assert not suricata(root, "d2-reload", "suricata_standby")
    assert "divert-to 8300" in anchor(root, "d2-reload")


def test_a_removed_consumer_and_a_removed_rule(changed):
    """Removal: the removed consumer's rules are withdrawn, its states drain, then it stops and the
    rc.conf variables and rc.d script the collection wrote for it go; a removed rule goes from the
    anchor and the consumer it diverted to keeps running."""
    root = changed["root"]
    assert groups(root, "d2-remove") == {"8400": 2}
    rules = anchor(root, "d2-remove")
    assert "divert-to 8410" not in rules and "dns-keep" not in rules and "web-keep" in rules
    rc_conf = on_host(root, "d2-remove", "cat", "/etc/rc.conf")
    assert "gone_" not in rc_conf and "keep_enable" in rc_conf
    assert not on_host(root, "d2-remove", "ls", "/usr/local/etc/rc.d/gone")
    assert "gone" not in json.loads(on_host(root, "d2-remove", "cat", "/var/db/divert_fleet/consumers.json"))[
        "consumers"]
    assert pidfile(root, "d2-remove", "keep") == changed["before"]["keep_pid"]


def test_a_consumer_replaced_on_its_port_hands_over_through_the_standby_port(changed):
    """A new consumer on the port of one that left the spec: it binds its standby port while the old
    group serves, the rules switch to it, the old group drains and stops; no loss counter moved
    (test_a_day2_run_changes_each_host_as_one_unit_and_loses_nothing)."""
    root = changed["root"]
    assert groups(root, "d2-replace") == {"8501": 3}
    rules = anchor(root, "d2-replace")
    assert "divert-to 8501" in rules and "divert-to 8500" not in rules
    rc_conf = on_host(root, "d2-replace", "cat", "/etc/rc.conf")
    assert "old_" not in rc_conf and 'new_standby_sockets="3"' in rc_conf, rc_conf
    assert not on_host(root, "d2-replace", "ls", "/usr/local/etc/rc.d/old")
    record = json.loads(on_host(root, "d2-replace", "cat", "/var/db/divert_fleet/consumers.json"))["consumers"]
    assert sorted(record) == ["new"] and record["new"]["live_port"] == 8501
    assert "port 8500, serving on 8501 (new): 3 of 3 sockets bound" in changed["result"].stdout


def test_a_port_move_binds_beside_the_serving_group_and_drains_it(changed):
    """The spec moves mov from 8900 (its primary instance serving) to 8905/8906: 8905 would be the
    serving instance's own, so the next group is the standby instance on 8906; 8900 drains and stops.
    No loss counter moved (test_a_day2_run_changes_each_host_as_one_unit_and_loses_nothing)."""
    root = changed["root"]
    assert groups(root, "d2-move") == {"8906": 2}
    rules = anchor(root, "d2-move")
    assert "divert-to 8906" in rules and "divert-to 8900" not in rules
    rc_conf = on_host(root, "d2-move", "cat", "/etc/rc.conf")
    assert 'mov_standby_port="8906"' in rc_conf and "mov_port" not in rc_conf, rc_conf
    record = json.loads(on_host(root, "d2-move", "cat", "/var/db/divert_fleet/consumers.json"))["consumers"]
    assert record["mov"]["service"] == "mov_standby" and record["mov"]["live_port"] == 8906
    assert "port 8905, serving on 8906 (mov): 2 of 2 sockets bound" in changed["result"].stdout


def test_a_renamed_consumer_keeps_its_process_and_group(changed):
    root = changed["root"]
    assert pidfile(root, "d2-rename", "nmd") == changed["before"]["nmd_pid"]
    assert groups(root, "d2-rename") == {"8800": 2} and "divert-to 8800" in anchor(root, "d2-rename")
    record = json.loads(on_host(root, "d2-rename", "cat", "/var/db/divert_fleet/consumers.json"))["consumers"]
    assert sorted(record) == ["renamed"] and record["renamed"]["live_port"] == 8800
    assert "port 8800 (renamed): 2 of 2 sockets bound" in changed["result"].stdout


def test_a_restart_without_a_standby_port_is_refused_before_the_host_is_touched(changed):
    root = changed["root"]
    out = changed["result"].stdout
    assert ("refusing the change on d2-refuse before touching it: consumer nsb on port 8600 needs a restart "
            "(sockets 2 -> 3") in out
    assert anchor(root, "d2-refuse") == changed["before"]["rules"]["d2-refuse"]
    assert pidfile(root, "d2-refuse", "nsb") == changed["before"]["nsb_pid"]
    assert on_host(root, "d2-refuse", "cat", "/etc/rc.conf") == changed["before"]["rc_conf"]["d2-refuse"]
    assert on_host(root, "d2-refuse", "cat", "/var/db/divert_fleet/consumers.json") == \
        changed["before"]["record"]["d2-refuse"]


def test_a_next_group_that_binds_only_some_sockets_leaves_the_host_as_it_was(changed):
    """I1, I6: the standby group binds 3 of 6: it is stopped again, the host keeps its rules and its old
    group, and the play names the host, the port and both counts."""
    root = changed["root"]
    out = changed["result"].stdout
    assert "host d2-fault port 8701: 6 socket(s) declared, 3 bound" in out
    assert anchor(root, "d2-fault") == changed["before"]["rules"]["d2-fault"]
    assert groups(root, "d2-fault") == {"8700": 4}
    assert "flt_standby" not in on_host(root, "d2-fault", "cat", "/etc/rc.conf")
    assert on_host(root, "d2-fault", "cat", "/var/db/divert_fleet/consumers.json") == \
        changed["before"]["record"]["d2-fault"]


@pytest.fixture(scope="module")
def back(changed, day2):
    """The next run: rsz 5 -> 9 goes back to its spec port; the refused and the faulty change are
    taken back (so nothing else changes); then the same spec once more."""
    root = day2["root"]

    def change(d):
        d["consumers"]["rsz"]["sockets"] = 9
        d["consumers"]["nsb"]["sockets"] = 2
        d["consumers"]["flt"]["sockets"] = 4
    step2 = edit(changed["step1"], change, day2["spec"] + ".step2.yml")
    expect(root, "d2-resize", 8100, 9)
    before = report(root)
    result = site(root, step2, **FORKS)
    middle = report(root)
    again = site(root, step2, **FORKS)
    return dict(root=root, before=before, result=result, middle=middle, again=again, after=report(root),
                step2=step2)


def test_resize_up_goes_back_to_the_spec_port(back):
    root = back["root"]
    assert back["result"].returncode == 0, back["result"].stdout[-4000:]
    counts = recap(back["result"].stdout)
    assert counts["d2-resize"]["changed"] >= 1
    assert all(counts[h]["changed"] == 0 for h in HOSTS if h != "d2-resize"), counts
    assert groups(root, "d2-resize") == {"8100": 9}
    assert "divert-to 8100" in anchor(root, "d2-resize") and "divert-to 8101" not in anchor(root, "d2-resize")
    assert "port 8100 (rsz): 9 of 9 sockets bound" in back["result"].stdout
    assert not unchanged(back["before"], back["middle"]), unchanged(back["before"], back["middle"])


def test_a_rerun_changes_nothing_and_shows_the_live_ports(back):
    assert back["again"].returncode == 0, back["again"].stdout[-4000:]
    counts = recap(back["again"].stdout)
    assert all(counts[h]["changed"] == 0 for h in HOSTS), counts
    out = back["again"].stdout
    assert "port 8100 (rsz): 9 of 9 sockets bound" in out
    assert "port 8200, serving on 8201 (rst): 3 of 3 sockets bound" in out
    assert not unchanged(back["middle"], back["after"]), unchanged(back["middle"], back["after"])


def test_two_concurrent_rollouts_do_not_interleave_on_a_host(back, day2):
    """Two site.yml runs at once under traffic (the modules take /var/run/divert_fleet.lock): one of
    them switches d2-resize (9 -> 5, onto 8101), the other finds it done; both succeed, the host ends
    with one group of 5 and its rules on it, and no loss counter moves."""
    root = day2["root"]
    step3 = edit(back["step2"], lambda d: d["consumers"]["rsz"].update(sockets=5), day2["spec"] + ".step3.yml")
    expect(root, "d2-resize", 8101, 5)
    before = report(root)
    results = [None, None]

    def run(i):
        results[i] = site(root, step3, **FORKS)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        assert result.returncode == 0, result.stdout[-4000:]
    switched = [min(1, recap(result.stdout)["d2-resize"]["changed"]) for result in results]
    assert sorted(switched) == [0, 1], [result.stdout[-3000:] for result in results]
    assert groups(root, "d2-resize") == {"8101": 5}
    assert "divert-to 8101" in anchor(root, "d2-resize") and "divert-to 8100" not in anchor(root, "d2-resize")
    record = json.loads(on_host(root, "d2-resize", "cat", "/var/db/divert_fleet/consumers.json"))
    assert record["consumers"]["rsz"]["live_port"] == 8101 and record["consumers"]["rsz"]["sockets"] == 5
    after = report(root)
    assert not unchanged(before, after), unchanged(before, after)
