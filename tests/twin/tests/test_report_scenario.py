"""The report can fail: rules before bind vs. bind before rules (design.md I1)."""
from twin_fixtures import divert_setup

RULE = "pass in quick inet proto tcp to port 80 keep state divert-to 8000\n"


def run_traffic(h, n=60):
    for i in range(n):
        h.flow(packets=3, sport=20000 + i)


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
    assert rep["dropped_noport"] > 0 and rep["incomplete_loads"] > 0, rep


def test_scenario_binding_first_gives_zeros(host):
    host.twinctl("expect", "--host", "fbsd", "--port", "8000", "--sockets", "3")
    divert_setup(host, 3)                      # right order: bind, then rules
    host.pf_load(RULE)
    run_traffic(host)
    rep = host.report()
    assert rep["diverted"] > 0
    assert (rep["dropped_noport"], rep["dropped_hole"], rep["flows_remapped"], rep["incomplete_loads"]) == (0, 0, 0, 0), rep


def test_scenario_background_traffic_and_report_cli(host):
    import json
    divert_setup(host, 3)
    host.pf_load(RULE + "pass in quick inet proto udp to port 53 divert-to 8000\n")
    host.twinctl("traffic", "start", "--rate", "400")
    # await the event "packets have flowed" rather than sleeping a fixed time
    for _ in range(200):
        if host.call(op="report")["diverted"] >= 50:
            break
        host.call(op="drain", timeout=0.05)
    host.twinctl("traffic", "stop")
    out = json.loads(host.twinctl("report", "--format", "json", "--drain").stdout)
    for key in ("packets", "flows", "dropped_noport", "dropped_hole", "flows_remapped", "incomplete_loads",
                "socket_packets", "rule_hits", "hosts"):
        assert key in out
    assert out["flows"] > 0 and out["packets"] > 0 and out["dropped_noport"] == 0
    assert any("divert-to 8000" in k for k in out["rule_hits"])


def test_scenario_group_resize_in_place_remaps_flows(host):
    divert_setup(host, 1)
    host.pf_load(RULE)
    names = ["f%d" % i for i in range(12)]
    for i, n in enumerate(names):
        host.flow(packets=1, name=n, end=False, sport=33000 + i)
    # grow the group in place (violates I2/I5): restart with 3 sockets
    host.sh("service twinconsumer stop && sysrc -q twinconsumer_sockets=3 && service twinconsumer start", check=True)
    host.wait_sockets(8000, 3)
    for n in names:
        host.call(op="flow_more", name=n, packets=1, end=True)
    rep = host.report()
    assert rep["flows_remapped"] > 0 and rep["withdraw_violations"] > 0
