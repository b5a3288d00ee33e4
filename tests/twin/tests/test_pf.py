"""pf facts (freebsd-facts.md: "pf"); member selection is in test_lb.py."""
from twin_fixtures import divert_setup


def bad_rules(host, text):
    """pfctl -nf on `text`: its exit code and the lines it printed."""
    host.write("/etc/bad.conf", text)
    r = host.sh("pfctl -a fleet -nf /etc/bad.conf")
    return r.returncode, r.stderr.splitlines()


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
    # an inbound state: its destination, `<-`, its source (print_state prints the wire key's addr[1] first)
    assert "all tcp 10.1.2.3:80 <- 192.0.2.10:40000       ESTABLISHED:ESTABLISHED" in ss
    assert "id: " in ss and "creatorid:" in ss
    assert ", 3:0 pkts, " in ss and ", rule 0\n" in ss and ", anchor" not in ss   # a main-ruleset rule


def test_fact_pf_diverts_only_passed_packets(host):
    divert_setup(host, 1)
    host.pf_load("block in quick proto tcp to port 80 divert-to 8000\n")
    assert host.flow(packets=2)["verdicts"] == ["block"] * 2
    assert host.report()["diverted"] == 0


# ---- input pfctl refuses (sbin/pfctl/parse.y): the twin must refuse it too ----------------
LOADED = "pass in quick proto tcp to port 80 divert-to 8000\n"
NOT_LOADED = "pfctl: Syntax error in config file: pf rules not loaded"


def _refused(host, text, expected):
    host.sh("kldload -n pf", check=True)
    host.pf_load(LOADED, anchor="fleet")
    before = host.sh("pfctl -a fleet -s rules").stdout
    rc, lines = bad_rules(host, text)
    assert rc == 1 and lines == ["/etc/bad.conf:" + m for m in expected] + [NOT_LOADED], lines
    host.write("/etc/bad.conf", text)
    assert host.sh("pfctl -a fleet -f /etc/bad.conf").returncode == 1
    assert host.sh("pfctl -a fleet -s rules").stdout == before


def test_bad_input_label_over_63_characters(host):
    """rule_label(): strlcpy into label[PF_RULE_LABEL_SIZE = 64] -> "rule label too long"."""
    _refused(host, 'pass in all label "%s"\n' % ("x" * 64), ["1: rule label too long (max 63 chars)"])
    host.write("/etc/ok.conf", 'pass in all label "%s"\n' % ("x" * 63))
    assert host.sh("pfctl -a fleet -nf /etc/ok.conf").returncode == 0


def test_bad_input_interface_name_over_15_characters(host):
    """if_item: strlcpy into ifname[IFNAMSIZ = 16] -> "interface name too long"."""
    _refused(host, "# x\npass in on vtnet0123456789ab all\n", ["2: interface name too long"])
    _refused(host, "set skip on vtnet0123456789ab\n", ["1: interface name too long"])
    host.write("/etc/ok.conf", "pass in on vtnet0123456789 all\n")
    assert host.sh("pfctl -a fleet -nf /etc/ok.conf").returncode == 0


def test_bad_input_keep_state_on_block(host):
    """filter_consistent: `r->action != PF_PASS && r->keep_state`, then expand_rule skips the rule."""
    _refused(host, "block in proto tcp to port 80 keep state\n",
             ["1: keep state is great, but only for pass rules", "1: skipping rule due to errors",
              "1: rule expands to no valid combination"])
    host.write("/etc/ok.conf", "block in proto tcp to port 80 no state\n")
    assert host.sh("pfctl -a fleet -nf /etc/ok.conf").returncode == 0


def test_bad_input_icmp_type_on_tcp(host):
    """expand_rule: "icmp-type mismatch"; filter_consistent: "icmp-type/code only applies to icmp"."""
    _refused(host, "pass in inet proto tcp icmp-type echoreq\n",
             ["1: icmp-type mismatch", "1: icmp-type/code only applies to icmp",
              "1: skipping rule due to errors", "1: rule expands to no valid combination"])
    _refused(host, "pass in proto tcp icmp-type echoreq\n",
             ["1: icmp-type mismatch", "1: icmp-type/code only applies to icmp",
              "1: must indicate address family with icmp-type/code",
              "1: skipping rule due to errors", "1: rule expands to no valid combination"])
    host.write("/etc/ok.conf", "pass in inet proto icmp icmp-type echoreq\n")
    assert host.sh("pfctl -a fleet -nf /etc/ok.conf").returncode == 0


def test_bad_input_port_on_a_protocol_without_ports(host):
    _refused(host, "pass in proto { tcp icmp } to port 80\n",
             ["1: port only applies to tcp/udp", "1: skipping rule due to errors"])


def test_fact_set_skip_on_interface_is_not_filtered(host):
    """`set skip on IF`: pf does not filter (nor divert) packets on IF; the main ruleset's list
    replaces the previous one."""
    divert_setup(host, 1)
    host.pf_load("set skip on { igb1 lo0 }\npass in quick proto tcp to port 80 keep state divert-to 8000\n"
                 "block in quick on igb1 all\n")
    assert host.call(op="state")["pf_skip"] == ["igb1", "lo0"]
    assert host.flow(packets=2, iface="igb1")["verdicts"] == ["pass", "pass"]
    assert host.flow(packets=2, iface="igb0", sport=40001)["verdicts"] == ["divert", "divert"]
    host.pf_load("pass in quick proto tcp to port 80 keep state divert-to 8000\n")
    assert host.call(op="state")["pf_skip"] == []
    assert host.flow(packets=1, iface="igb1", sport=40002)["verdicts"] == ["divert"]
    rep = host.report()
    assert rep["flows_undiverted"] == 0           # skipped interfaces are the operator's choice


def test_fact_states_print_the_anchor_and_rule_numbers_they_were_created_under(host):
    """pf_print_state.c: `age ..., expires in ..., P:P pkts, B:B bytes, anchor N, rule M`; the kernel
    exports `st->anchor.ptr->nr` and `st->rule.ptr->nr`, so a state keeps the numbers of the rules it
    was created under (replaced rules stay alive with their numbers) after both rulesets are reloaded.
    `pfctl -sr -vv` prints `@N ` before each rule (print_rule's verbose is PF_OPT_VERBOSE2), -v does not."""
    divert_setup(host, 1)
    host.pf_load('pass out all keep state\nanchor "fleet"\n')
    host.pf_load("pass in quick proto udp to port 53 divert-to 8000\n"
                 "pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    assert "@1 anchor \"fleet\" all" in host.sh("pfctl -sr -vv").stdout.splitlines()
    assert not any(line.startswith("@") for line in host.sh("pfctl -sr -v").stdout.splitlines())
    host.flow(packets=2, end=False, name="old", sport=41000)
    host.pf_load("pass in quick proto icmp divert-to 8000\npass in quick proto udp to port 53 divert-to 8000\n"
                 "pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    host.pf_load('pass out all keep state\npass in quick on lo0 all\nanchor "fleet"\n')
    host.flow(packets=1, end=False, name="new", sport=42000)
    assert host.sh("pfctl -a fleet -sr -vv").stdout.splitlines()[-2].startswith("@2 pass in quick proto tcp")
    states = host.sh("pfctl -ss -vv").stdout
    old = states[states.index("192.0.2.10:41000"):].splitlines()
    new = states[states.index("192.0.2.10:42000"):].splitlines()
    assert old[2].endswith(", 2:0 pkts, 120:0 bytes, anchor 1, rule 1"), old
    assert old[2].startswith("   age 00:00:0") and ", expires in 23:59:5" in old[2], old
    assert new[2].endswith(", 1:0 pkts, 60:0 bytes, anchor 2, rule 2"), new
    assert old[3].startswith("   id: ") and " creatorid: " in old[3]
