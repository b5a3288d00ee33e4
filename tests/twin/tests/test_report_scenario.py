"""The report catches every bypass: deliberately wrong rollouts make it non-zero, a correct one
leaves every loss counter at 0 (design.md I1-I4; freebsd-facts.md "pf", "ipfw")."""
import json

from twin_fixtures import LOSS_COUNTERS, divert_setup, losses

RULE = "pass in quick inet proto tcp to port 80 keep state divert-to 8000\n"
MAIN = 'pass all\nanchor "fleet"\n'
ZERO = {k: 0 for k in LOSS_COUNTERS}


def run_traffic(h, n=60):
    h.flows(n, packets=3, sport=20000)


def only(rep, **nonzero):
    """The loss counters, expected zero except those named."""
    return losses(rep) == dict(ZERO, **nonzero)


def test_scenario_rules_loaded_before_consumer_binds(host):
    host.sh("kldload -n ipdivert pf && pfctl -e", check=True)
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "3")
    host.pf_load(RULE)                         # wrong order: rules first
    run_traffic(host, 20)
    host.install_consumer(port=8000, sockets=3)
    host.sh("service twinconsumer start", check=True)
    host.wait_sockets(8000, 3)
    run_traffic(host, 20)
    rep = host.report()
    assert rep["dropped_noport"] == 60 and rep["incomplete_loads"] == 1, losses(rep)


def test_scenario_binding_first_gives_zeros(host):
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "3")
    divert_setup(host, 3)                      # right order: bind, then rules
    host.pf_load(MAIN)
    host.pf_load(RULE, anchor="fleet")
    long_lived = host.flows(20, name="l", end=False, sport=30000)
    run_traffic(host)
    host.pf_load(RULE + "pass in quick inet proto udp to port 53 keep state divert-to 8000\n", anchor="fleet")
    for i in range(20):                        # an anchor reload in one transaction moves nothing
        host.more("l%d" % i, packets=2)
    rep = host.report()
    assert rep["diverted"] == 20 + 180 + 40 and rep["reinjected"] == rep["diverted"]
    assert {f["verdicts"][0] for f in long_lived} == {"divert"}
    assert only(rep), losses(rep)


def test_scenario_background_traffic_and_report_cli(host):
    divert_setup(host, 3)
    host.pf_load(RULE + "pass in quick inet proto udp to port 53 divert-to 8000\n")
    host.twinctl("traffic", "start", "--rate", "400", "--long-share", "0.5", "--host", "fbsd")
    # await the event "packets have flowed" rather than sleeping a fixed time
    assert host.call(op="wait_counter", counter="reinjected", at_least=200, timeout=60)["ok"]
    host.twinctl("traffic", "stop", "--host", "fbsd")
    out = json.loads(host.twinctl("report", "--format", "json", "--drain", "--host", "fbsd").stdout)
    for key in ("packets", "flows", "socket_packets", "rule_hits", "hosts") + LOSS_COUNTERS:
        assert key in out
    assert out["flows"] > 0 and out["diverted"] >= 200
    assert {k: out[k] for k in LOSS_COUNTERS} == ZERO, {k: out[k] for k in LOSS_COUNTERS}
    assert any("divert-to 8000" in k for k in out["rule_hits"])
    table = host.twinctl("report", "--format", "table", "--host", "fbsd").stdout.splitlines()
    assert table[0].split()[:3] == ["host", "packets", "diverted"]
    assert table[1].split()[0] == "fbsd" and table[1].split()[-1] == "8000:3"
    assert table[-2].split()[0] == "total"
    assert table[-1].startswith("twin report: 1 hosts, ") and "no loss" in table[-1]


def test_scenario_anchor_flushed_and_reloaded_under_traffic(host):
    """A flush and a reload are two transactions: a flow that starts between them is never
    inspected (states keep old flows on their rule; new flows take whatever else passes)."""
    divert_setup(host, 2)
    host.pf_load(MAIN)
    host.pf_load(RULE, anchor="fleet")
    assert host.flow(packets=1, name="a", end=False, sport=41000)["verdicts"] == ["divert"]
    host.sh("pfctl -a fleet -F rules", check=True)
    assert host.more("a")["verdicts"] == ["divert"]                      # its state keeps the rule
    assert host.flow(packets=1, name="b", end=False, sport=42000)["verdicts"] == ["pass"]
    host.pf_load(RULE, anchor="fleet")
    assert host.more("b", packets=3)["verdicts"] == ["pass"] * 3           # on the state of `pass all`
    rep = host.report()
    assert only(rep, flows_undiverted=1), losses(rep)
    assert rep["flows_undiverted_details"][0]["rule"].startswith("pf anchor fleet: pass in quick")


def test_scenario_flows_during_a_final_withdrawal_are_not_counted(host):
    """A rule withdrawn for good (and never loaded again) is no longer wanted."""
    divert_setup(host, 2)
    host.pf_load(MAIN)
    host.pf_load(RULE, anchor="fleet")
    host.sh("pfctl -a fleet -F rules", check=True)
    assert host.flow(packets=2, sport=42000)["verdicts"] == ["pass", "pass"]
    assert only(host.report())


def test_scenario_pf_disabled_and_enabled(host):
    divert_setup(host, 2)
    host.pf_load(RULE)
    assert host.flow(packets=1, name="a", end=False, sport=41000)["verdicts"] == ["divert"]
    host.sh("pfctl -d", check=True)
    assert host.more("a")["verdicts"] == ["pass"]                         # once diverted, now not
    assert host.flow(packets=1, name="c", end=False, sport=43000)["verdicts"] == ["pass"]
    rep = host.report()
    assert rep["flows_undiverted"] == 0        # not yet: the rule may have been withdrawn for good
    host.sh("pfctl -e", check=True)
    assert host.more("a")["verdicts"] == ["divert"]                       # pfctl -d kept the states
    rep = host.report()
    assert only(rep, flows_undiverted=2), losses(rep)


def test_scenario_ipfw_file_half_loaded_into_the_live_set(host):
    """`ipfw -q FILE` stops at its first error with the earlier lines applied: the live set
    lacks rules the host is meant to run."""
    host.sh("kldload -n ipfw", check=True)
    divert_setup(host, 1)
    host.sh("pfctl -d && ipfw -q add 65000 allow ip from any to any", check=True)
    host.write("/etc/good.ipfw", "add 10000 set 5 divert 8000 tcp from any to any 80 in via igb0\n"
                                 "add 10010 set 5 divert 8000 tcp from any to any 443 in via igb0\n")
    host.sh("ipfw -q /etc/good.ipfw", check=True)
    assert host.flow(packets=1, name="a", end=False, dport=443)["verdicts"] == ["divert"]
    host.write("/etc/half.ipfw", "delete set 5\n"
                                 "add 10000 set 5 divert 8000 tcp from any to any 80 in via igb0\n"
                                 "add 10005 set 5 bogus ip from any to any\n"
                                 "add 10010 set 5 divert 8000 tcp from any to any 443 in via igb0\n")
    r = host.sh("ipfw -q /etc/half.ipfw")
    assert r.returncode != 0 and r.stderr.startswith("Line 3:")
    assert host.more("a")["verdicts"] == ["pass"]
    assert host.flow(packets=1, dport=443, sport=44000)["verdicts"] == ["pass"]
    assert host.flow(packets=1, dport=80, sport=44001)["verdicts"] == ["divert"]
    rep = host.report()
    assert only(rep, flows_undiverted=2), losses(rep)


def test_scenario_consumer_stopped_under_live_states(host):
    """I2: withdrawing the rules is not enough; the states they created still divert to the port."""
    divert_setup(host, 3)
    host.pf_load(MAIN)
    host.pf_load(RULE, anchor="fleet")
    assert host.flow(packets=1, name="a", end=False, sport=41000)["verdicts"] == ["divert"]
    host.sh("pfctl -a fleet -F rules", check=True)                         # rules withdrawn
    host.sh("service twinconsumer stop", check=True)                       # ... but a state is alive
    host.wait_sockets(8000, 0)
    assert host.more("a")["verdicts"] == ["drop-noport"]
    rep = host.report()
    assert only(rep, withdraw_violations=3, dropped_noport=1), losses(rep)
    assert {d["reason"] for d in rep["withdraw_violation_details"]} == {"states"}


def test_scenario_consumer_stopped_after_its_states_ended_is_clean(host):
    divert_setup(host, 3)
    host.pf_load(MAIN)
    host.pf_load(RULE, anchor="fleet")
    host.flow(packets=1, name="a", end=False, sport=41000)
    host.sh("pfctl -a fleet -F rules", check=True)
    host.more("a", end=True)                                               # the last state ends
    host.sh("service twinconsumer stop", check=True)
    host.wait_sockets(8000, 0)
    assert only(host.report())


def test_scenario_consumer_that_swallows_packets(host):
    divert_setup(host, 2, mode="swallow")
    host.pf_load(RULE)
    assert {f["verdicts"][0] for f in host.flows(10)} == {"divert"}
    assert host.call(op="report")["swallowed"] == 0    # judged by a drain, not before
    rep = host.report(timeout=0.5)
    assert only(rep, swallowed=10), losses(rep)


def test_scenario_packets_queued_in_a_closing_socket_are_swallowed(host):
    divert_setup(host, 1, mode="stall")
    host.pf_load("pass in quick inet proto udp to port 53 no state divert-to 8000\n")
    host.flows(5, proto=17, dport=53)
    host.pf_load("")
    host.sh("service twinconsumer stop", check=True)
    host.wait_sockets(8000, 0)
    rep = host.call(op="report")
    assert only(rep, swallowed=5), losses(rep)


def test_no_false_positive_group_rebuilt_after_pfctl_d(host):
    """pfctl -d takes every rule out of force: a group rebuilt bigger while pf is disabled does
    not make the earlier load incomplete."""
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "3")
    divert_setup(host, 3)
    host.pf_load(RULE)
    host.sh("pfctl -d", check=True)
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "5")
    host.sh("service twinconsumer stop && sysrc -q twinconsumer_sockets=5 && service twinconsumer start", check=True)
    host.wait_sockets(8000, 5)
    host.sh("pfctl -e", check=True)
    run_traffic(host, 10)
    rep = host.report()
    assert only(rep), (losses(rep), rep["incomplete_load_details"])


def test_no_false_positive_load_events_across_a_reboot(host):
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "3")
    host.sh("sysrc -q kld_list=ipdivert pf_enable=YES", check=True)
    host.write("/etc/pf.conf", MAIN)
    divert_setup(host, 3)
    host.pf_load(RULE, anchor="fleet")
    run_traffic(host, 10)
    host.sh("sysrc -q twinconsumer_sockets=5", check=True)
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "5")
    host.twinctl("reboot", "--host", "fbsd")
    host.wait_sockets(8000, 5)                 # the next boot binds a bigger group
    host.pf_load(RULE, anchor="fleet")         # and loads the rules once it is whole
    run_traffic(host, 10)
    rep = host.report()
    assert only(rep), (losses(rep), rep["incomplete_load_details"])


def test_traffic_generator_that_dies_fails_loudly(host):
    host.call(op="traffic_start", rate=200, crash_after=5)
    host.call(op="wait_counter", counter="packets", at_least=5, timeout=30)
    host.call(op="traffic_wait", timeout=30)            # until the generator thread has ended
    rep = host.twinctl("report", "--format", "json", "--host", "fbsd", check=False)
    assert rep.returncode == 1 and "traffic generator" in rep.stderr
    stop = host.twinctl("traffic", "stop", "--host", "fbsd", check=False)
    assert stop.returncode == 1 and "failure injected after" in stop.stderr
    assert host.twinctl("report", "--format", "json", "--host", "fbsd", check=False).returncode == 1
    host.twinctl("traffic", "start", "--host", "fbsd")
    host.twinctl("traffic", "stop", "--host", "fbsd")
    assert host.twinctl("report", "--format", "json", "--host", "fbsd", check=False).returncode == 0


def test_scenario_group_resize_in_place_remaps_flows(host):
    divert_setup(host, 1)
    host.pf_load(RULE)
    held = host.flows(12, name="f", end=False, sport=33000)
    # grow the group in place (violates I2/I5): restart with 3 sockets
    host.sh("service twinconsumer stop && sysrc -q twinconsumer_sockets=3 && service twinconsumer start", check=True)
    host.wait_sockets(8000, 3)
    for i in range(12):
        host.more("f%d" % i, end=True)
    rep = host.report()
    assert rep["flows_remapped"] == 12 and rep["withdraw_violations"] == 1, losses(rep)
    assert len(held) == 12
