# -*- coding: utf-8 -*-
"""One host's change as one unit: start, reload, blue/green switch, in-place restart, removal, failure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import change_needed, read_record
from ansible_collections.divert.fleet.plugins.module_utils._host_drivers import SuricataDriver
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import PfBackend
from ansible_collections.divert.fleet.plugins.module_utils._host_lifecycle import UnitFailure, run_unit
from ansible_collections.divert.fleet.plugins.module_utils import _host_gate, _host_rules
from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError, ensure_rc_var, sysrc_values

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import FakeFreeBSD

PROGRAM = "print('reflector')\n"
RULES = ('pass in quick on igb0 inet proto tcp from any to any port 80 keep state label "divert_fleet:web" '
         'divert-to 8000\n'
         'pass in quick inet proto udp from any to any port 53 keep state label "divert_fleet:dns" divert-to 8100\n')


def probe(**changes):
    consumer = {"name": "probe", "port": 8000, "standby_port": 8001, "sockets": 3, "service": "probe",
                "driver": "reflector", "rc_vars": {}, "ready_timeout": 10, "drain_timeout": 30}
    consumer.update(changes)
    return consumer


def appid(**changes):
    consumer = {"name": "appid", "port": 8100, "sockets": 1, "service": "appidd", "driver": "rc",
                "rc_vars": {"appidd_flags": "-p 8100"}, "ready_timeout": 10}
    consumer.update(changes)
    return consumer


def _fake(tmp_path, partial=None):
    """A FreeBSD whose services bind what their rc.conf variables say (reflector instances) or one
    socket on 8100 (appidd); `partial` caps how many sockets a service binds."""
    fake = FakeFreeBSD(rc_conf={"kld_list": "ipdivert", "pf_enable": "YES", "divert_fleet_enable": "YES"},
                       pf_conf='anchor "divert_fleet"\n')
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "pf.conf").write_text(fake.pf_conf)

    def binder(service):
        if service == "appidd":
            return [(8100, 300, "appidd")]
        port = int(fake.rc_conf.get(service + "_port", 0))
        count = int(fake.rc_conf.get(service + "_sockets", 0))
        if partial and service in partial:
            count = partial[service]
        return [(port, 400 + len(service), "python3.11")] * count
    fake.binder = binder
    fake.pf_prints = {}
    return fake, fake.host(tmp_path)


def unit(fake, host, consumers, rules=RULES, **kwargs):
    groups = {}
    for consumer in consumers:
        groups[consumer["port"]] = groups.get(consumer["port"], 0) + consumer["sockets"]
    return run_unit(host, PfBackend(host, "divert_fleet"), consumers, rules, groups, "freebsd",
                    reference_program=PROGRAM, **kwargs)


def states_change_after(fake, polls_needed, then=""):
    """From the `polls_needed`-th `pfctl -ss -vv` on, pf shows `then` as its states; returns the list
    that counts the polls."""
    polls = []

    def poll(_argv):
        polls.append(1)
        if len(polls) >= polls_needed:
            fake.states_text = then
    fake.on["pfctl -ss -vv"] = poll
    return polls


def loaded_ports(fake):
    return sorted(set(int(word) for line in fake.anchor_printed.splitlines()
                      for word in line.split()[-1:]))


def test_first_run_binds_before_the_rules_then_nothing(tmp_path):
    fake, host = _fake(tmp_path)
    result = unit(fake, host, [probe(), appid()])
    assert [c["action"] for c in result["consumers"]] == ["start", "start"]
    assert fake.index("service probe start") < fake.index("pfctl -o none -a divert_fleet -f")
    assert fake.rc_conf["probe_port"] == "8000" and fake.rc_conf["probe_sockets"] == "3"
    assert loaded_ports(fake) == [8000, 8100] and result["live_ports"] == {"probe": 8000, "appid": 8100}
    record = read_record(host)
    assert record["probe"]["live_port"] == 8000 and record["appid"]["managed_vars"] == [
        "appidd_enable", "appidd_flags"]
    fake.log[:] = []
    again = unit(fake, host, [probe(), appid()])
    assert not again["changed"], again["actions"]
    assert not [line for line in fake.log if line.startswith(("service", "sysrc probe", "kill"))], fake.log


def test_a_run_that_changes_nothing_reads_rc_conf_once(tmp_path):
    """The consumers', pf's and the boot gate's rc.conf variables come from one `sysrc -e`."""
    fake, host = _fake(tmp_path)
    backend = PfBackend(host, "divert_fleet")
    also = _host_rules.RC_VARS + _host_gate.RC_VARS
    first = unit(fake, host, [probe(), appid()], rc_also=also)
    _host_gate.install_boot_gate(host, backend, first["live_rules"], first["live_groups"], "freebsd", 60, False)
    fake.log[:] = []
    host = fake.host(tmp_path)  # the next module run: nothing read yet
    backend = PfBackend(host, "divert_fleet")
    again = unit(fake, host, [probe(), appid()], rc_also=also)
    assert not again["changed"]
    assert not _host_gate.install_boot_gate(host, backend, again["live_rules"], again["live_groups"], "freebsd", 60,
                                            False)
    reads = [line for line in fake.log if line.startswith("sysrc")]
    assert len(reads) == 1 and reads[0].startswith("sysrc -e "), fake.log
    assert {"kld_list", "pf_enable", "divert_fleet_enable", "probe_port"} <= set(reads[0].split()[2:])


def test_rc_conf_values_are_read_again_after_a_write(tmp_path):
    fake, host = _fake(tmp_path)
    assert sysrc_values(host, ["pf_enable", "nothing_set"]) == {"pf_enable": "YES"}
    assert sysrc_values(host, ["nothing_set", "pf_enable"]) == {"pf_enable": "YES"}  # unset is remembered too
    assert len(fake.commands("sysrc -e")) == 1
    assert sysrc_values(host, ["kld_list", "pf_enable"]) == {"kld_list": "ipdivert", "pf_enable": "YES"}
    assert fake.commands("sysrc -e")[-1] == "sysrc -e kld_list"  # only the name not read yet
    assert ensure_rc_var(host, "nothing_set", "YES", False)
    assert sysrc_values(host, ["nothing_set", "pf_enable"]) == {"nothing_set": "YES", "pf_enable": "YES"}
    assert fake.commands("sysrc -e")[-1] == "sysrc -e nothing_set pf_enable"


def _replaced(fake, host, **changes):
    """probe serving on 8000, then the spec replaces it by probe2 on the same port."""
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    return probe(name="probe2", service="probe2", **changes)


def test_a_new_consumer_on_a_removed_ones_port_starts_on_its_standby_port_first(tmp_path):
    fake, host = _fake(tmp_path)
    probe2 = _replaced(fake, host)
    result = unit(fake, host, [probe2, appid()])
    (report,) = [c for c in result["consumers"] if c["name"] == "probe2"]
    assert report["action"] == "start" and report["live_port"] == 8001, report
    assert "still serves probe" in report["reasons"][0]
    # the new group is whole before the rules switch to it; the old one stops only after the switch
    assert fake.index("service probe2_standby start") < fake.index("pfctl -o none -a divert_fleet -f")
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service probe onestop")
    assert loaded_ports(fake) == [8001, 8100]
    assert not [name for name in fake.rc_conf if name.startswith("probe_")], fake.rc_conf
    assert sorted(read_record(host)) == ["appid", "probe2"] and read_record(host)["probe2"]["live_port"] == 8001
    fake.log[:] = []
    assert not unit(fake, host, [probe2, appid()])["changed"]


def test_a_takeover_without_a_standby_port_is_refused_before_anything_changes(tmp_path):
    fake, host = _fake(tmp_path)
    probe2 = _replaced(fake, host, standby_port=None)
    with pytest.raises(HostError) as info:
        unit(fake, host, [probe2, appid()])
    message = info.value.message
    assert "consumer probe2 takes port 8000 over from consumer probe, which left the spec" in message, message
    assert "needs a restart" not in message  # not taken for an adopted probe2
    assert not [line for line in fake.log if line.startswith(("service", "sysrc probe", "pfctl -o none"))], fake.log
    assert loaded_ports(fake) == [8000, 8100] and sorted(read_record(host)) == ["appid", "probe"]


def test_an_allowed_takeover_withdraws_drains_and_stops_the_old_group_before_the_new_binds(tmp_path):
    fake, host = _fake(tmp_path)
    probe2 = _replaced(fake, host, standby_port=None)
    result = unit(fake, host, [probe2, appid()], allow_disruption=True)
    (report,) = [c for c in result["consumers"] if c["name"] == "probe2"]
    assert report["action"] == "takeover" and report["live_port"] == 8000, report
    withdraw = fake.index("pfctl -o none -a divert_fleet -f")
    assert withdraw < fake.index("service probe onestop") < fake.index("service probe2 start")
    loads = [i for i, line in enumerate(fake.log) if line.startswith("pfctl -o none -a divert_fleet -f")]
    assert len(loads) == 2 and loads[-1] > fake.index("service probe2 start")  # the rules come back last
    assert loaded_ports(fake) == [8000, 8100] and fake.rc_conf["probe2_port"] == "8000"
    assert any("taken over from probe" in action for action in result["actions"]), result["actions"]
    assert sorted(read_record(host)) == ["appid", "probe2"]
    fake.log[:] = []
    assert not unit(fake, host, [probe2, appid()])["changed"]


@pytest.mark.parametrize("standby_port, allow, said", [
    (8001, False, "would start probe2 on port 8001"),
    (None, True, "would drain port 8000, stop probe, then start probe2 on it"),
])
def test_a_takeover_in_check_mode_says_what_it_would_do_and_changes_nothing(tmp_path, standby_port, allow, said):
    fake, host = _fake(tmp_path)
    probe2 = _replaced(fake, host, standby_port=standby_port)
    rules, rc_conf, record = fake.anchor_printed, dict(fake.rc_conf), read_record(host)
    result = unit(fake, host, [probe2, appid()], check_mode=True, allow_disruption=allow)
    assert result["changed"] and said in result["actions"], result["actions"]
    assert not [line for line in fake.log if line.startswith(("service", "sysrc probe", "sysrc -x",
                                                              "pfctl -o none -a divert_fleet -f"))], fake.log
    assert (fake.anchor_printed, fake.rc_conf, read_record(host)) == (rules, rc_conf, record)


def test_a_consumer_renamed_in_the_spec_keeps_its_running_group(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    pid_before = dict(fake.pid)
    fake.log[:] = []
    renamed = probe(name="web-probe")  # the same service, port, sockets and settings
    result = unit(fake, host, [renamed, appid()])
    assert "consumer web-probe is probe renamed: its group on port 8000 is the same" in result["actions"]
    assert [c["action"] for c in result["consumers"]] == [None, None]
    assert not [line for line in fake.log if line.startswith(("service", "sysrc probe", "sysrc -x",
                                                              "pfctl -o none -a divert_fleet -f"))], fake.log
    assert sorted(read_record(host)) == ["appid", "web-probe"] and fake.pid == pid_before
    fake.log[:] = []
    assert not unit(fake, host, [renamed, appid()])["changed"]
    # renamed and resized at once: the group it was switches as the old name's would
    switched = unit(fake, host, [probe(name="probe-5", sockets=5), appid()])
    (report,) = [c for c in switched["consumers"] if c["name"] == "probe-5"]
    assert report["action"] == "switch" and report["live_port"] == 8001 and loaded_ports(fake) == [8001, 8100]
    assert sorted(read_record(host)) == ["appid", "probe-5"]


def test_consumers_only_a_takeover_needs_permission_and_a_rename_keeps_the_group(tmp_path):
    """divert.fleet.divert_consumers (rules=None): no switch is possible, so a new consumer on a removed
    one's port takes it over in place only with allow_disruption; a rename changes nothing running."""
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    with pytest.raises(HostError, match="takes port 8000 over from consumer probe"):
        unit(fake, host, [probe(name="probe2", service="probe2"), appid()], rules=None)
    result = unit(fake, host, [probe(name="probe2", service="probe2"), appid()], rules=None, allow_disruption=True)
    assert [c["action"] for c in result["consumers"]] == ["takeover", None]
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service probe onestop") < \
        fake.index("service probe2 start")
    assert sorted(read_record(host)) == ["appid", "probe2"] and "divert-to 8000" not in fake.anchor_printed
    fake.log[:] = []
    renamed = unit(fake, host, [probe(name="web", service="probe2"), appid()], rules=None)
    assert [c["action"] for c in renamed["consumers"]] == [None, None]
    assert not fake.commands("service") and sorted(read_record(host)) == ["appid", "web"]


def test_a_failed_takeover_says_the_port_was_freed_and_stops_the_new_group(tmp_path):
    fake, host = _fake(tmp_path, partial={"probe2": 1})
    probe2 = _replaced(fake, host, standby_port=None)
    with pytest.raises(UnitFailure) as info:
        unit(fake, host, [probe2, appid()], allow_disruption=True)
    message = info.value.message
    assert "port(s) 8000 were freed for a takeover the play allowed (probe stopped" in message, message
    assert "the new group(s) probe2 on port 8000 were stopped" in message
    assert fake.index("service probe2 start") < fake.index("service probe2 onestop")
    assert "probe2_port" not in fake.rc_conf  # its settings went with it


@pytest.mark.parametrize("consumers, refused", [
    ([probe(), probe(name="other", service="other", standby_port=None)],
     "consumer probe standby_port: port 8000 is shared with consumer \"other\""),
    ([probe(standby_port=8100), appid()], "consumer probe standby_port: standby_port 8100 is a port of consumer "
                                          "\"appid\""),
    ([probe(standby_port=8000), appid()], "consumer probe standby_port: standby_port 8000 is the consumer's own port"),
])
def test_the_host_refuses_a_standby_port_the_spec_check_refuses(tmp_path, consumers, refused):
    """_grammar.standby_clash, the standby-port rule both sides share."""
    fake, host = _fake(tmp_path)
    with pytest.raises(HostError) as info:
        unit(fake, host, consumers)
    assert refused in info.value.message, info.value.message
    assert not fake.log, fake.log  # refused before any command


def test_two_consumers_may_share_a_port_without_standby_ports(tmp_path):
    fake, host = _fake(tmp_path)
    shared = [probe(standby_port=None, sockets=2), probe(name="other", service="other", standby_port=None,
                                                         sockets=1)]
    result = unit(fake, host, shared, rules=RULES.split("\n", 1)[0] + "\n")
    assert result["live_groups"] == {"8000": 3} and loaded_ports(fake) == [8000]


def test_a_removed_consumer_that_an_earlier_failed_run_stopped_is_only_forgotten(tmp_path):
    """The record still names probe, but a run that failed later stopped it and removed its rc.d
    script and variables: `service probe onestop` fails as FreeBSD's service(8) does for a missing
    script, and that is what was wanted."""
    fake, host = _fake(tmp_path, partial=None)
    unit(fake, host, [probe(standby_port=None), appid()])
    fake.running.discard("probe")
    fake.bound_by.pop("probe", None)
    for name in [name for name in fake.rc_conf if name.startswith("probe_")]:
        del fake.rc_conf[name]
    (tmp_path / "usr/local/etc/rc.d/probe").unlink()
    fake.fail["service probe onestop"] = (1, "", "probe does not exist in /etc/rc.d or the local startup\n"
                                          "directories (/usr/local/etc/rc.d), or is not executable\n")
    fake.log[:] = []
    result = unit(fake, host, [appid()], rules=RULES.split("\n", 1)[1])
    assert sorted(read_record(host)) == ["appid"] and loaded_ports(fake) == [8100], result["actions"]
    assert not fake.commands("sysrc -x"), fake.log  # nothing of probe's was left to remove
    fake.log[:] = []
    assert not unit(fake, host, [appid()], rules=RULES.split("\n", 1)[1])["changed"]


def _moved(port):
    """RULES with the web rule diverting to `port`."""
    return RULES.replace("divert-to 8000", "divert-to %d" % port)


def test_a_port_move_binds_the_other_instance_beside_the_serving_one(tmp_path):
    """probe serves as its primary instance on 8000; the spec moves it to 8005 (standby 8006). The
    spec's port 8005 names the primary instance, which is serving: the next group is the standby
    instance on 8006, and the primary on 8000 stops after the switch."""
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    moved = probe(port=8005, standby_port=8006)
    result = unit(fake, host, [moved, appid()], rules=_moved(8005))
    (report,) = [c for c in result["consumers"] if c["name"] == "probe"]
    assert report["action"] == "switch" and report["live_port"] == 8006, report
    assert not fake.commands("service probe start"), fake.log  # the serving instance is not started again
    assert fake.index("service probe_standby start") < fake.index("pfctl -o none -a divert_fleet -f")
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service probe onestop")
    assert loaded_ports(fake) == [8006, 8100] and fake.running >= {"probe_standby"} and "probe" not in fake.running
    assert fake.rc_conf["probe_standby_port"] == "8006" and "probe_port" not in fake.rc_conf, fake.rc_conf
    assert read_record(host)["probe"]["service"] == "probe_standby"
    fake.log[:] = []
    assert not unit(fake, host, [moved, appid()], rules=_moved(8005))["changed"]
    # the next change goes to the spec's port, as the primary instance again
    back = unit(fake, host, [probe(port=8005, standby_port=8006, sockets=5), appid()], rules=_moved(8005))
    assert [c["live_port"] for c in back["consumers"]] == [8005, 8100] and loaded_ports(fake) == [8005, 8100]
    assert fake.rc_conf["probe_port"] == "8005" and "probe_standby_port" not in fake.rc_conf


def test_an_allowed_port_move_onto_the_standby_port_stops_the_standby_instance(tmp_path):
    """probe serves as its standby instance on 8001; the spec moves it to 8001 with no standby port.
    In place (allowed): the rules withdrawn, the standby instance stopped, the primary started on 8001."""
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    unit(fake, host, [probe(sockets=5), appid()])  # onto 8001 as probe_standby
    assert read_record(host)["probe"]["service"] == "probe_standby"
    fake.log[:] = []
    moved = probe(port=8001, standby_port=None, sockets=5)
    result = unit(fake, host, [moved, appid()], rules=_moved(8001), allow_disruption=True)
    (report,) = [c for c in result["consumers"] if c["name"] == "probe"]
    assert report["action"] == "restart" and report["live_port"] == 8001, report
    withdraw = fake.index("pfctl -o none -a divert_fleet -f")
    assert withdraw < fake.index("service probe_standby onestop") < fake.index("service probe start")
    assert "probe_standby" not in fake.running and "probe" in fake.running
    assert fake.rc_conf["probe_port"] == "8001" and "probe_standby_port" not in fake.rc_conf, fake.rc_conf
    assert loaded_ports(fake) == [8001, 8100] and read_record(host)["probe"]["service"] == "probe"
    fake.log[:] = []
    assert not unit(fake, host, [moved, appid()], rules=_moved(8001))["changed"]


def test_resize_with_a_standby_port_switches_groups_and_drains_the_old(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    # one established flow of the old group's rule 0 (divert-to 8000), older than the switch
    fake.states_text = ("all tcp 192.0.2.1:80 <- 10.0.0.1:4000       ESTABLISHED:ESTABLISHED\n"
                        "   age 00:05:00, expires in 23:59:00, 10:10 pkts, 600:600 bytes, anchor 0, rule 0\n"
                        "   id: 6a1b000000000001 creatorid: 74776e31\n")
    polls = states_change_after(fake, 3)
    fake.log[:] = []
    result = unit(fake, host, [probe(sockets=5), appid()])
    (report,) = [c for c in result["consumers"] if c["name"] == "probe"]
    assert report["action"] == "switch" and report["live_port"] == 8001 and report["reasons"][0] == "sockets 3 -> 5"
    # the new group is whole before the rules switch; the old group stops only after its flow ended
    assert fake.index("service probe_standby start") < fake.index("pfctl -o none -a divert_fleet -f")
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service probe onestop")
    assert len(polls) >= 3 and fake.log.index("service probe onestop") > max(
        i for i, line in enumerate(fake.log) if line == "pfctl -ss -vv")
    assert loaded_ports(fake) == [8001, 8100]
    assert fake.rc_conf["probe_standby_sockets"] == "5" and "probe_enable" not in fake.rc_conf
    assert (tmp_path / "usr/local/etc/rc.d/probe_standby").exists()
    assert read_record(host)["probe"]["live_port"] == 8001
    assert any("drained in" in action for action in result["actions"])
    fake.log[:] = []
    assert not unit(fake, host, [probe(sockets=5), appid()])["changed"]
    # the next change goes back to the spec's port
    back = unit(fake, host, [probe(sockets=7), appid()])
    assert [c["live_port"] for c in back["consumers"]] == [8000, 8100] and loaded_ports(fake) == [8000, 8100]
    assert "probe_standby_enable" not in fake.rc_conf and fake.rc_conf["probe_sockets"] == "7"


def test_the_drain_waits_for_anchor_states_only_whatever_the_anchors_number(tmp_path):
    """pfctl -ss -vv prints `anchor N` only for states created inside an anchor (pf_print_state.c): a
    state of the main ruleset with the same rule number is not ours and must not hold the drain; a state
    of our rule whose anchor number is not the anchor's number now (the main ruleset was reloaded since
    it was created) is ours and must."""
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    main_state = ("all tcp 198.51.100.7:22 <- 10.0.0.2:5000       ESTABLISHED:ESTABLISHED\n"
                  "   age 01:00:00, expires in 23:59:00, 10:10 pkts, 600:600 bytes, rule 0\n"
                  "   id: 6a1b000000000002 creatorid: 74776e31\n")
    moved_state = ("all tcp 192.0.2.1:80 <- 10.0.0.1:4000       ESTABLISHED:ESTABLISHED\n"
                   "   age 00:05:00, expires in 23:59:00, 10:10 pkts, 600:600 bytes, anchor 3, rule 0\n"
                   "   id: 6a1b000000000001 creatorid: 74776e31\n")
    fake.states_text = main_state + moved_state
    polls = states_change_after(fake, 2, then=main_state)
    fake.log[:] = []
    result = unit(fake, host, [probe(sockets=5), appid()])
    assert len(polls) >= 2 and any("drained in" in action for action in result["actions"]), result["actions"]
    assert not result["warnings"]
    assert "pfctl -sr -vv" not in fake.log


def test_the_drain_waits_for_a_state_the_old_rules_created_while_the_switch_ran(tmp_path, monkeypatch):
    """The switch is a transaction that takes time; until it commits the old rules still create
    states diverting to the old port. Such a state is younger than the start of the switch, but
    older than its end: the drain must wait for it, or the old group stops under a live state."""
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    clock = {"now": 1000000.0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    # created by the old rule 0 (divert-to 8000) two seconds before the slow load committed
    during = ("all tcp 192.0.2.1:80 <- 10.0.0.9:4100       ESTABLISHED:ESTABLISHED\n"
              "   age 00:00:02, expires in 23:59:00, 3:3 pkts, 180:180 bytes, anchor 0, rule 0\n"
              "   id: 6a1b000000000009 creatorid: 74776e31\n")

    def slow_load(_argv):
        clock["now"] += 5.0  # the transaction ran 5 s
        fake.states_text = during
    fake.on["pfctl -o none -a divert_fleet -f"] = slow_load
    polls = states_change_after(fake, 2)
    fake.log[:] = []
    result = unit(fake, host, [probe(sockets=5), appid()])
    assert len(polls) >= 2, result["actions"]
    assert fake.log.index("service probe onestop") > max(
        i for i, line in enumerate(fake.log) if line == "pfctl -ss -vv")


def test_a_new_group_that_never_becomes_whole_leaves_the_host_as_it_was(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    before_rules, before_record = fake.anchor_printed, read_record(host)
    fake.binder_partial = None
    real = fake.binder
    fake.binder = lambda service: real(service)[:2] if service == "probe_standby" else real(service)
    with pytest.raises(UnitFailure) as info:
        unit(fake, host, [probe(sockets=5, ready_timeout=2), appid()])
    message = info.value.message
    assert "port 8001: 5 socket(s) declared, 2 bound" in message
    assert "the host runs what it ran before: probe on port 8000, appid on port 8100" in message
    assert "the new group(s) probe on port 8001 were stopped" in message
    assert info.value.details["done"]  # the module reports changed: something ran and was undone
    assert fake.anchor_printed == before_rules and read_record(host) == before_record
    assert "probe_standby" not in fake.running and "probe_standby_enable" not in fake.rc_conf
    assert not (tmp_path / "usr/local/etc/rc.d/probe_standby").exists()


def test_a_restart_without_a_standby_port_is_refused_before_anything_changes(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    with pytest.raises(HostError) as info:
        unit(fake, host, [probe(), appid(rc_vars={"appidd_flags": "-p 8100 -v"})])
    message = info.value.message
    assert message.startswith("refusing the change on fw1 before touching it: consumer appid on port 8100 needs a "
                              "restart (appidd_flags \"-p 8100\" -> \"-p 8100 -v\")")
    assert "passes undiverted or is dropped for up to 10 s" in message and "standby_port" in message
    assert not [line for line in fake.log if line.startswith(("service", "kill", "pfctl -o none", "sysrc appidd"))]


def test_an_allowed_in_place_restart_withdraws_drains_restarts_and_reloads_the_rules(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    result = unit(fake, host, [probe(), appid(rc_vars={"appidd_flags": "-p 8100 -v"})], allow_disruption=True)
    assert [c["action"] for c in result["consumers"]] == [None, "restart"]
    withdraw = fake.index("pfctl -o none -a divert_fleet -f")
    assert withdraw < fake.index("sysrc appidd_flags") < fake.index("service appidd restart")
    assert fake.loaded_files[-2].count("divert-to 8100") == 0  # withdrawn first
    assert loaded_ports(fake) == [8000, 8100]  # and back once whole
    assert fake.rc_conf["appidd_flags"] == "-p 8100 -v"


def test_a_reload_only_change_signals_without_rebinding(tmp_path):
    fake, host = _fake(tmp_path)
    rules_file = tmp_path / "usr/local/etc/probe.rules"
    rules_file.parent.mkdir(parents=True, exist_ok=True)
    rules_file.write_text("v1\n")
    watched = probe(watch={"reload": ["/usr/local/etc/probe.rules"]})
    unit(fake, host, [watched, appid()])
    rules_file.write_text("v2\n")
    fake.pid["probe"] = 4321
    fake.log[:] = []
    result = unit(fake, host, [watched, appid()])
    assert [c["action"] for c in result["consumers"]] == ["reload", None]
    assert fake.signals == [("-USR2", 4321)]
    assert not fake.commands("service probe start") and not fake.commands("service probe_standby")
    assert not fake.commands("pfctl -o none -a divert_fleet -f")
    assert not unit(fake, host, [watched, appid()])["changed"]


def test_a_removed_consumer_stops_after_its_rules_and_states_are_gone(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    fake.log[:] = []
    result = unit(fake, host, [probe()], rules=RULES.splitlines(True)[0])
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service appidd onestop")
    assert loaded_ports(fake) == [8000]
    assert "appidd_enable" not in fake.rc_conf and "appidd_flags" not in fake.rc_conf
    assert "kld_list" in fake.rc_conf  # never a variable the collection did not set for it
    assert "appid" not in read_record(host)
    assert any("consumer removed from the spec" in action for action in result["actions"])


def test_check_mode_says_what_it_would_do_and_changes_nothing(tmp_path):
    fake, host = _fake(tmp_path)
    unit(fake, host, [probe(), appid()])
    before = (dict(fake.rc_conf), fake.anchor_printed, read_record(host))
    fake.log[:] = []
    result = unit(fake, host, [probe(sockets=5), appid()], check_mode=True)
    assert result["changed"] and result["live_ports"]["probe"] == 8001
    assert "would switch probe on port 8001" in result["actions"]
    assert "divert-to 8001" in result["diff"]["rules"]["after"]
    assert (dict(fake.rc_conf), fake.anchor_printed, read_record(host)) == before
    assert not [line for line in fake.log if line.startswith(("service", "sysrc probe", "pfctl -o none -a divert_fleet -f"))]


def test_change_needed_is_the_one_decision():
    running = {"driver": "rc", "live_port": 8000, "sockets": 3, "settings": {"x_flags": "-a"},
               "restart_fp": {"/p": "1"}, "reload_fp": {"/r": "1"}}
    assert change_needed(running, dict(running)) == (None, [])
    assert change_needed(running, dict(running, reload_fp={"/r": "2"})) == ("reload", ["/r changed"])
    assert change_needed(running, dict(running, sockets=5))[0] == "restart"
    assert change_needed(running, dict(running, restart_fp={"/p": "2"}, reload_fp={"/r": "2"})) == (
        "restart", ["/p changed"])
    assert change_needed(running, dict(running, live_port=8001)) == ("restart", ["port 8000 -> 8001"])


def test_suricata_settings_repeat_the_divert_port_per_listener(tmp_path):
    driver = SuricataDriver(FakeFreeBSD().host(tmp_path), "freebsd")
    consumer = {"name": "ips", "port": 8010, "standby_port": 8011, "sockets": 3, "service": "suricata",
                "rc_vars": {"suricata_flags": "-D -v"}}
    assert driver.settings(consumer, 8010) == {"suricata_enable": "YES", "suricata_divertport": "8010",
                                               "suricata_flags": "-D -v -d 8010 -d 8010"}
    assert driver.settings(consumer, 8011)["suricata_standby_flags"] == "-D -v -d 8011 -d 8011"
    assert driver.instance_service(consumer, 8011) == "suricata_standby"


def test_opnsense_rc_variables_go_to_rc_conf_d(tmp_path):
    fake, host = _fake(tmp_path)
    (tmp_path / "usr/local/sbin").mkdir(parents=True)
    result = run_unit(host, PfBackend(host, "divert_fleet"), [appid()], RULES.splitlines(True)[1], {8100: 1},
                      "opnsense")
    assert (tmp_path / "etc/rc.conf.d/appidd").read_text() == 'appidd_enable="YES"\nappidd_flags="-p 8100"\n'
    assert "appidd_flags" not in fake.rc_conf
    assert (tmp_path / "boot/loader.conf.local").read_text() == 'ipdivert_load="YES"\n'
    assert result["consumers"][0]["action"] == "start"


def test_opnsense_ids_is_configured_through_its_model(tmp_path):
    fake, host = _fake(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/config.xml").write_text(
        '<?xml version="1.0"?>\n<opnsense><OPNsense><IDS version="1.0.9"><general><enabled>0</enabled>'
        '<mode>pcap</mode><homenet>10.0.0.0/8</homenet></general></IDS></OPNsense></opnsense>\n')
    fake.binder = lambda service: [(8000, 77, "suricata")] * 4 if service == "suricata" else []
    ids = {"name": "ids", "port": 8000, "sockets": 4, "service": "suricata", "driver": "opnsense-ids",
           "rc_vars": {}, "ready_timeout": 10}
    rules = RULES.splitlines(True)[0]
    result = run_unit(host, PfBackend(host, "divert_fleet"), [ids], rules, {8000: 4}, "opnsense")
    config = (tmp_path / "conf/config.xml").read_text()
    assert "<enabled>1</enabled>" in config and "<mode>divert</mode>" in config
    assert "<divert_listeners>4</divert_listeners>" in config and "<homenet>10.0.0.0/8</homenet>" in config
    assert "<ips>" not in config  # not a field of the model since 1.1.2 (mode took its place)
    assert fake.index("configctl template reload OPNsense/IDS") < fake.index("configctl ids start")
    assert fake.index("configctl ids start") < fake.index("pfctl -o none -a divert_fleet -f")
    assert list((tmp_path / "conf/backup").iterdir())  # the previous config kept, as OPNsense does
    assert not [k for k in fake.rc_conf if k.startswith("suricata")]
    assert result["consumers"][0]["bound"] == 4
    fake.log[:] = []
    assert not run_unit(host, PfBackend(host, "divert_fleet"), [ids], rules, {8000: 4}, "opnsense")["changed"]


@pytest.mark.parametrize("consumer, message", [
    (dict(appid(), driver="opnsense-ids", port=8000), "is not OPNsense"),
    (dict(appid(), driver="suricata", sockets=17), "at most 16 divert listeners"),
    (dict(appid(), standby_port=8101), "cannot use standby_port"),
])
def test_driver_refusals_change_nothing(tmp_path, consumer, message):
    fake, host = _fake(tmp_path)
    with pytest.raises(HostError) as info:
        unit(fake, host, [consumer], rules=RULES.splitlines(True)[1].replace("8100", str(consumer["port"])))
    assert message in info.value.message
    assert not [line for line in fake.log if line.startswith(("service", "sysrc appidd", "pfctl -o none"))]


def test_record_of_an_earlier_version_is_read(tmp_path):
    fake, host = _fake(tmp_path)
    (tmp_path / "var/db/divert_fleet").mkdir(parents=True)
    (tmp_path / "var/db/divert_fleet/consumers.json").write_text(json.dumps(
        {"appid": {"port": 8100, "sockets": 1, "rc_vars": {"appidd_enable": "YES", "appidd_flags": "-p 8100"},
                   "program": None}}))
    fake.running.add("appidd")
    fake.bound_by["appidd"] = [(8100, 300, "appidd")]
    fake.rc_conf.update(appidd_enable="YES", appidd_flags="-p 8100")
    result = unit(fake, host, [appid()], rules=RULES.splitlines(True)[1])
    assert result["consumers"][0]["action"] is None


def test_consumers_sharing_a_port_are_waited_for_as_one_group(tmp_path):
    fake, host = _fake(tmp_path)
    real = fake.binder
    fake.binder = lambda service: [(8100, 301, "appid2")] if service == "appid2" else real(service)
    second = appid(name="appid2", service="appid2", rc_vars={})
    result = unit(fake, host, [appid(), second], rules=RULES.splitlines(True)[1])
    assert result["sockets"]["8100"]["bound"] == 2 and loaded_ports(fake) == [8100]
    assert [c["action"] for c in result["consumers"]] == ["start", "start"]
