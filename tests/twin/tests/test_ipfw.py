"""ipfw facts (freebsd-facts.md: "ipfw")."""
from twin_fixtures import divert_setup
from twinlib.kernel import LB


def test_fact_ipfw_delivers_to_the_stateless_slot(host):
    """fact: ipfw hands id 0: every packet reaches slot jenkins_hash(0) % count."""
    host.sh("kldload -n ipfw", check=True)
    divert_setup(host, 4)
    host.sh("pfctl -d", check=False)
    host.sh("ipfw -q add 100 divert 8000 tcp from any to any 80 in via igb0", check=True)
    for i in range(9):
        host.flow(packets=2, sport=30000 + i)
    rep = host.report()
    slot = LB.stateless_slot(4)
    assert slot == 3
    assert {s["slot"]: s["packets"] for s in rep["sockets"].values()} == {0: 0, 1: 0, 2: 0, 3: 18}
    # reinjected packets resume after rule 100 and meet the default deny (65535)
    assert rep["reinjected"] == 18


def test_fact_ipfw_refuses_divert_without_ipdivert(host):
    host.sh("kldload ipfw", check=True)
    r = host.sh("ipfw add 100 divert 8000 tcp from any to any")
    assert r.returncode == 69 and "getsockopt(IP_FW_XADD): Invalid argument" in r.stderr
    assert host.sh("ipfw list").stdout == "65535 deny ip from any to any\n"


def test_fact_ipfw_set_swap_is_atomic_switch(host):
    host.sh("kldload -n ipfw ipdivert", check=True)
    host.write("/etc/twin.ipfw", "add 10000 set 5 divert 8000 tcp from any to any 80 in via igb0\n")
    host.sh("ipfw -q /etc/twin.ipfw", check=True)
    host.write("/etc/twin2.ipfw", "set disable 6\nadd 10000 set 6 divert 8001 tcp from any to any 80 in via igb0\n")
    host.sh("ipfw -q /etc/twin2.ipfw", check=True)
    lst = host.sh("ipfw -S list").stdout
    assert "10000 set 5 divert 8000 tcp from any to any 80 in via igb0" in lst
    assert "# DISABLED 10000 set 6 divert 8001" in lst
    assert host.call(op="state")["live_ports"] == [8000]
    host.sh("ipfw set swap 5 6", check=True)
    assert host.call(op="state")["live_ports"] == [8001]
    assert host.sh("ipfw set show").stdout.startswith("disable 6 enable 0")   # sets swap, the mask stays


def test_fact_ipfw_n_checks_syntax_without_the_kernel(host):
    """fact: `ipfw -n` checks syntax without talking to the kernel: no ipfw.ko, no ipdivert."""
    assert host.sh("ipfw -n add 100 divert 8000 tcp from any to any").returncode == 0
    r = host.sh("ipfw -n add 100 frobnicate ip from any to any")
    assert r.returncode == 65 and "invalid action frobnicate" in r.stderr
    host.write("/etc/check.ipfw", "delete set 6\nset disable 6\nadd 10000 set 6 divert 8000 tcp from any to any\n"
               "set swap 5 6\n")
    assert host.sh("ipfw -n -q /etc/check.ipfw").returncode == 0
    host.sh("kldload ipfw", check=True)
    assert host.sh("ipfw -n add 100 divert 8000 tcp from any to any").returncode == 0
    assert host.sh("ipfw list").stdout == "65535 deny ip from any to any\n"


def test_fact_ipfw_n_checks_syntax_only_and_rule_range(host):
    host.sh("kldload -n ipfw ipdivert", check=True)
    assert host.sh("ipfw -n add 100 divert 8000 tcp from any to any").returncode == 0
    assert "00100" not in host.sh("ipfw list").stdout
    r = host.sh("ipfw add 65535 allow ip from any to any")
    assert r.returncode != 0
    r = host.sh("ipfw add 100 frobnicate ip from any to any")
    assert r.returncode == 65 and "invalid action frobnicate" in r.stderr


def test_fact_ipfw_file_stops_at_first_error(host):
    host.sh("kldload -n ipfw ipdivert", check=True)
    host.write("/etc/bad.ipfw", "add 100 allow tcp from any to any 22\nadd 200 bogus ip from any to any\nadd 300 allow ip from any to any\n")
    r = host.sh("ipfw -q /etc/bad.ipfw")
    assert r.returncode != 0 and r.stderr.startswith("Line 2:")
    lst = host.sh("ipfw list").stdout
    assert "00100 allow tcp from any to any 22" in lst and "00300" not in lst


def test_ipfw_flush_spares_set_31(host):
    host.sh("kldload -n ipfw", check=True)
    host.sh("ipfw -q add 100 set 31 allow ip from any to any; ipfw -q add 200 allow ip from any to any; ipfw -q flush")
    lst = host.sh("ipfw list").stdout
    assert "00100 allow ip from any to any" in lst and "00200" not in lst
