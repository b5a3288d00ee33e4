"""pf facts (freebsd-facts.md: "pf", "How a group member is chosen")."""
from twin_fixtures import divert_setup
from twinlib.kernel import be_state_id, select_member


def used_members(count, start=1_780_000_000, flows=2000):
    return {select_member(be_state_id(start + i), count) for i in range(flows)}


def test_fact_big_endian_state_ids_only_odd_part_receives_flows():
    # id % count with id = htobe64(counter) read as a little-endian integer
    assert used_members(32) == {0}
    assert used_members(24) == {0, 8, 16}
    assert used_members(31) == set(range(31))
    for n in range(1, 33, 2):
        assert used_members(n) == set(range(n))
    assert len(used_members(12)) == 3


def test_fact_state_counter_starts_when_pf_enabled(host):
    import time
    host.sh("kldload -n pf ipdivert", check=True)
    t0 = int(time.time())
    host.sh("pfctl -e", check=True)
    st = host.call(op="state")
    assert t0 <= st["pf_since"] <= t0 + 2 and st["pf_counter"] == st["pf_since"]


def test_fact_lb_group_of_4_only_slot0_gets_flows(host):
    divert_setup(host, 4)
    host.pf_load("pass in quick inet proto tcp to port 80 keep state divert-to 8000\n")
    for i in range(40):
        host.flow(packets=2, sport=30000 + i)
    rep = host.report()
    per_slot = {}
    for s in rep["sockets"].values():
        per_slot[s["slot"]] = per_slot.get(s["slot"], 0) + s["packets"]
    assert per_slot[0] == 80 and all(v == 0 for k, v in per_slot.items() if k != 0), per_slot
    assert rep["reinjected"] == 80 and rep["dropped_noport"] == 0


def test_fact_lb_group_of_3_all_members_get_flows(host):
    divert_setup(host, 3)
    host.pf_load("pass in quick inet proto tcp to port 80 keep state divert-to 8000\n")
    for i in range(30):
        host.flow(packets=1, sport=30000 + i)
    rep = host.report()
    assert sorted(s["packets"] for s in rep["sockets"].values()) == [10, 10, 10]


def test_fact_packets_without_state_go_to_first_member(host):
    divert_setup(host, 3)
    host.pf_load("pass in quick inet proto udp to port 53 no state divert-to 8000\n")
    for i in range(12):
        host.flow(packets=1, proto=17, dport=53, sport=20000 + i)
    rep = host.report()
    assert {s["slot"]: s["packets"] for s in rep["sockets"].values()} == {0: 12, 1: 0, 2: 0}


def test_fact_states_keep_their_rule_across_anchor_reload(host):
    host.sh("kldload -n ipdivert pf && pfctl -e", check=True)
    host.install_consumer(port=8000, sockets=1)
    host.sh("service twinconsumer start", check=True)
    host.wait_sockets(8000, 1)
    host.pf_load('anchor "fleet"\n')
    r = host.pf_load("pass in quick inet proto tcp to port 80 keep state divert-to 8000\n", anchor="fleet")
    assert r.returncode == 0, r.stderr
    old = host.flow(packets=1, name="old", end=False, sport=41000)
    assert old["verdicts"] == ["divert"]
    host.pf_load("pass in quick inet proto tcp to port 80 keep state divert-to 8001\n", anchor="fleet")
    # the old flow's state still references the replaced rule: still port 8000
    more = host.call(op="flow_more", name="old", packets=3, end=True)
    assert more["verdicts"] == ["divert"] * 3
    # a new flow evaluates the new rule: port 8001 has no socket
    assert host.flow(packets=1, sport=42000)["verdicts"] == ["drop-noport"]
    assert "divert-to 8001" in host.sh("pfctl -a fleet -s rules").stdout


def test_fact_anchor_load_is_all_or_nothing(host):
    host.sh("kldload -n pf && pfctl -e", check=True)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    before = host.sh("pfctl -a fleet -s rules").stdout
    r = host.pf_load("pass in quick proto tcp to port 443 divert-to 8100\npass in bogus\n", anchor="fleet")
    assert r.returncode == 1
    assert "/etc/twin-test.conf:2: syntax error" in r.stderr
    assert "pfctl: Syntax error in config file: pf rules not loaded" in r.stderr
    assert host.sh("pfctl -a fleet -s rules").stdout == before


def test_fact_pfctl_nf_refuses_bad_rules_without_touching_loaded(host):
    host.sh("kldload -n pf && pfctl -e", check=True)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    before = host.sh("pfctl -a fleet -s rules").stdout
    cases = {"pass in proto tcp to port 80 divert-to 0\n": "1: invalid divert port: 0",
             "# c\npass in proto tcp divert-reply\n": "2: divert-reply has no meaning in FreeBSD pf(4)",
             "pass in\n\npass in quick on\n": "3: syntax error"}
    for text, msg in cases.items():
        host.write("/etc/bad.conf", text)
        r = host.sh("pfctl -a fleet -nf /etc/bad.conf")
        assert r.returncode == 1 and "/etc/bad.conf:" + msg in r.stderr, r.stderr
    host.write("/etc/good.conf", "pass in quick proto tcp to port 443 divert-to 8100\n")
    assert host.sh("pfctl -a fleet -nf /etc/good.conf").returncode == 0
    assert host.sh("pfctl -a fleet -s rules").stdout == before


def test_fact_pf_drops_divert_when_ipdivert_not_loaded(host):
    host.sh("kldload -n pf && pfctl -e", check=True)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n")
    assert host.flow(packets=2)["verdicts"] == ["drop-nodivert"] * 2
    assert host.report()["dropped_nodivert"] == 2


def test_fact_pf_does_not_divert_inet6(host):
    host.sh("kldload -n pf ipdivert && pfctl -e", check=True)
    host.pf_load("pass in quick inet6 proto tcp to port 80 divert-to 8000\n")
    r = host.flow(packets=1, af=6, src="2001:db8::1", dst="2001:db8::2")
    assert r["verdicts"] == ["pass"]


def test_fact_main_ruleset_load_keeps_anchors(host):
    host.sh("kldload -n pf && pfctl -e", check=True)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    host.pf_load('pass all\nanchor "fleet"\n')
    assert "divert-to 8000" in host.sh("pfctl -a fleet -s rules").stdout


def test_pfctl_prints_rules_normalised(host):
    host.sh("kldload -n pf", check=True)
    host.pf_load('pass in quick on igb0 inet proto tcp from any to { 10.0.0.0/8, 192.168.0.0/16 } '
                 'port { 80, 443 } keep state label "divert_fleet:inspect-web" divert-to 8000\n')
    out = host.sh("pfctl -s rules").stdout.splitlines()
    assert out[0] == ('pass in quick on igb0 inet proto tcp from any to 10.0.0.0/8 port = http '
                      'flags S/SA keep state label "divert_fleet:inspect-web" divert-to 8000')
    assert len(out) == 4


def test_pfctl_labels_and_states(host):
    divert_setup(host, 1)
    host.pf_load('pass in quick proto tcp to port 80 keep state label "x" divert-to 8000\n')
    host.flow(packets=3, end=False, name="f")
    lab = host.sh("pfctl -sl").stdout.split()
    assert lab[0] == "x" and lab[2] == "3" and lab[8] == "1"
    ss = host.sh("pfctl -ss -vv").stdout
    assert "all tcp 192.0.2.10:40000 -> 10.1.2.3:80" in ss and "id: " in ss and "creatorid:" in ss
