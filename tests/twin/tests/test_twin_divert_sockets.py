"""Divert socket semantics at the system-call boundary (freebsd-facts.md: "Divert sockets",
"Seeing bound divert sockets")."""
import json
import textwrap

from twin_fixtures import divert_setup, wait_until

PY = "/usr/local/bin/python3"


def run_py(host, code):
    host.write("/tmp/twin_t.py", textwrap.dedent(code))
    return host.sh("%s /tmp/twin_t.py" % PY)


def sockstat_rows(host, *args):
    out = host.sh("sockstat -4 -P divert --libxo json %s" % " ".join(args), check=True).stdout
    return json.loads(out)["sockstat"]["socket"]


def test_fact_second_plain_bind_eaddrinuse(host):
    host.sh("kldload ipdivert", check=True)
    r = run_py(host, """
        import socket
        a = socket.socket(44, socket.SOCK_RAW, 0); a.bind(("0.0.0.0", 8000))
        b = socket.socket(44, socket.SOCK_RAW, 0)
        try:
            b.bind(("0.0.0.0", 8000)); print("bound")
        except OSError as e:
            print(e.errno, e.strerror)
    """)
    assert r.stdout.strip() == "98 Address already in use", r.stdout + r.stderr


def test_fact_33rd_member_enospc_and_stays_unbound(host):
    """fact: 33rd LB member -> ENOSPC, socket left unbound (not listed by sockstat)."""
    host.sh("kldload ipdivert", check=True)
    host.write("/tmp/twin_33.py", textwrap.dedent("""
        import socket, sys, time
        out = []
        for i in range(33):
            s = socket.socket(44, socket.SOCK_RAW, 0)
            s.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
            try:
                s.bind(("0.0.0.0", 8000)); out.append(s)
            except OSError as e:
                print(i, e.strerror, s.getsockname()[1]); out.append(s)
        print("ready", flush=True)
        time.sleep(60)
    """))
    host.sh("daemon -o /var/run/twin33.log %s /tmp/twin_33.py" % PY, check=True)
    host.wait_sockets(8000, 32)
    log = wait_until(lambda: "ready" in host.sh("cat /var/run/twin33.log").stdout
                     and host.sh("cat /var/run/twin33.log").stdout, what="the 33 binds")
    assert log.splitlines()[0] == "32 No space left on device 0", log
    assert host.call(op="state")["groups"] == {"8000": 32}
    rows = sockstat_rows(host)
    assert len(rows) == 32 and {r["local"]["port"] for r in rows} == {8000}


def test_fact_reuseport_lb_only_before_bind(host):
    host.sh("kldload ipdivert", check=True)
    r = run_py(host, """
        import socket
        a = socket.socket(44, socket.SOCK_RAW, 0); a.bind(("0.0.0.0", 8000))
        a.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)   # too late: a stays a plain socket
        b = socket.socket(44, socket.SOCK_RAW, 0); b.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
        b.bind(("0.0.0.0", 8001))
        c = socket.socket(44, socket.SOCK_RAW, 0); c.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
        c.bind(("0.0.0.0", 8001)); print("lb group ok")
        d = socket.socket(44, socket.SOCK_RAW, 0)
        try:
            d.bind(("0.0.0.0", 8001))
        except OSError as e:
            print("plain on lb port:", e.strerror)
    """)
    assert "lb group ok" in r.stdout and "plain on lb port: Address already in use" in r.stdout, r.stdout + r.stderr


def test_fact_socket_needs_ipdivert(host):
    r = run_py(host, """
        import socket
        try:
            socket.socket(44, socket.SOCK_RAW, 0)
        except OSError as e:
            print(e.strerror)
    """)
    assert "Address family not supported" in r.stdout, r.stdout + r.stderr


def test_fact_socket_closes_when_process_dies(host):
    divert_setup(host, 3)
    assert host.sh("sockstat -4 -P divert -p 8000 -q").stdout.count("div4") == 3
    host.sh("kill -9 $(cat /var/run/twinconsumer.pid)")
    host.wait_sockets(8000, 0)
    assert host.sh("sockstat -4 -P divert -p 8000 -q").stdout == ""


def test_fact_noport_drop(host):
    host.sh("kldload ipdivert pf && pfctl -e", check=True)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n")
    r = host.flow(packets=3)
    assert r["verdicts"] == ["drop-noport"] * 3
    rep = host.report()
    assert rep["dropped_noport"] == 3
    assert "noport" in host.sh("netstat -s -p divert").stdout


def test_fact_close_compacts_the_group():
    """fact: closing a member moves the last one into its slot, count - 1; no holes (V)."""
    from twinlib.kernel import Kernel, DSock

    class Conn:
        def close(self):
            pass
    k = Kernel("/nonexistent", "unit", "freebsd")
    with k.lock:
        socks = [DSock(Conn(), 1, i, "t", None) for i in range(4)]
        for s in socks:
            assert k._bind(s, 8000, True) == 0
        k._close(socks[1])
        g = k.groups[8000]
        assert g.members == [socks[0], socks[3], socks[2]]
        assert [s.slot for s in g.members] == [0, 1, 2]
        k._close(socks[2])                     # the last member: nothing moves
        assert g.members == [socks[0], socks[3]]
        d = DSock(Conn(), 1, 9, "t", None)     # a new member takes the next slot
        assert k._bind(d, 8000, True) == 0 and d.slot == 2 and len(g.members) == 3


def test_fact_receive_buffer_fills_at_64k(host):
    """fact: a full receive buffer drops (soroverflow); DIVRCVQ is 65536 + 100 bytes and
    every queued packet takes its length plus a 16-byte sockaddr_in."""
    divert_setup(host, 1, mode="stall")
    host.pf_load("pass in quick inet proto udp to port 53 no state divert-to 8000\n")
    verdicts = [f["verdicts"][0] for f in host.flows(100, proto=17, dport=53, len=1000)]
    fits = (65536 + 100) // (1000 + 16)
    assert fits == 64
    assert verdicts == ["divert"] * fits + ["drop-full"] * (100 - fits)
    rep = host.call(op="report")
    assert rep["dropped_full"] == 100 - fits and rep["diverted"] == fits


def test_fact_receive_buffer_space_returns_when_read(host):
    """A consumer that reads keeps its buffer empty: no drop at any number of packets."""
    divert_setup(host, 1)
    host.pf_load("pass in quick inet proto udp to port 53 no state divert-to 8000\n")
    for _ in range(3):
        assert {f["verdicts"][0] for f in host.flows(60, proto=17, dport=53, len=1000)} == {"divert"}
        host.call(op="drain", timeout=10)
    assert host.report()["dropped_full"] == 0


def test_sockstat_json_numbers_one_row_per_process_and_descriptor(host):
    """fact: pid, fd and port are JSON numbers; one row per process and descriptor (a socket
    shared by a forked parent and child appears twice); listed by default and with -l."""
    divert_setup(host, 2, mode="fork")
    wait_until(lambda: host.sh("cat /var/run/twinconsumer.child").stdout.strip(), what="the forked child")
    parent = int(host.sh("cat /var/run/twinconsumer.pid").stdout)
    child = int(host.sh("cat /var/run/twinconsumer.child").stdout)
    rows = sockstat_rows(host, "-p", "8000")
    assert sorted((r["pid"], r["local"]["port"]) for r in rows) == sorted(
        [(parent, 8000)] * 2 + [(child, 8000)] * 2)
    assert all(isinstance(r[k], int) for r in rows for k in ("pid", "fd"))
    assert all(isinstance(r["local"]["port"], int) and r["proto"] == "div4" for r in rows)
    assert {r["fd"] for r in rows if r["pid"] == parent} == {r["fd"] for r in rows if r["pid"] == child}
    assert len(sockstat_rows(host, "-l", "-p", "8000")) == 4
    text = host.sh("sockstat -4 -P divert -q").stdout.splitlines()
    assert len(text) == 4 and all(line.split()[4:] == ["div4", "*:8000", "*:*"] for line in text)


def test_pcblist_is_freebsds_opaque_dump_one_record_per_socket(host):
    """fact: net.inet.divert.pcblist holds one xinpcb per bound socket (a socket held by two
    processes is one record); the collection's own parser reads it."""
    from ansible_collections.divert.fleet.plugins.module_utils import _host_parse as host_mod
    divert_setup(host, 2, mode="fork")
    wait_until(lambda: host.sh("cat /var/run/twinconsumer.child").stdout.strip(), what="the forked child")
    host.sh("daemon -p /var/run/other.pid /usr/local/bin/twinconsumer 8100 3", check=True)
    host.wait_sockets(8100, 3)
    out = host.sh("sysctl -x net.inet.divert.pcblist", check=True).stdout
    assert out.startswith("net.inet.divert.pcblist: Format:S,xinpcb Length:")
    length = int(out.split("Length:")[1].split()[0])
    assert length == 64 + 5 * 400 + 64
    rows = host_mod.parse_pcblist(out)
    assert sorted(r["port"] for r in rows) == [8000, 8000, 8100, 8100, 8100]
    table = host_mod.summarise(rows)
    assert {p: e["bound"] for p, e in table.items()} == {8000: 2, 8100: 3}
    # sockstat counts rows, i.e. per process: the forked consumer's 2 sockets show 4 times
    assert len(sockstat_rows(host, "-p", "8000")) == 4
    assert host.sh("sysctl net.inet.divert.pcblist").stdout == ""     # opaque: only with -x or -o
    dump = bytes.fromhex(out.split("Dump:0x")[1].strip())
    kaddrs = [dump[64 + i * 400 + 16:64 + i * 400 + 24] for i in range(5)]
    assert len(set(kaddrs)) == 5                                       # xso_so: one per socket
