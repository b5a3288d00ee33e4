"""Divert socket semantics at the system-call boundary (freebsd-facts.md: "Divert sockets")."""
import textwrap

from twin_fixtures import divert_setup

PY = "/usr/local/bin/python3"


def run_py(host, code):
    host.write("/tmp/twin_t.py", textwrap.dedent(code))
    return host.sh("%s /tmp/twin_t.py" % PY)


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


def test_fact_33rd_member_enospc(host):
    host.sh("kldload ipdivert", check=True)
    r = run_py(host, """
        import socket
        out = []
        for i in range(33):
            s = socket.socket(44, socket.SOCK_RAW, 0)
            s.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
            try:
                s.bind(("0.0.0.0", 8000)); out.append(s)
            except OSError as e:
                print(i, e.strerror)
        print(len(out))
    """)
    assert r.stdout.split("\n")[:2] == ["32 No space left on device", "32"], r.stdout + r.stderr


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


def test_fact_hole_when_one_member_closes():
    """Closing one member empties its slot and decrements the count without compacting."""
    from twinlib.kernel import Kernel, DSock

    class Conn:
        def close(self):
            pass
    k = Kernel("/nonexistent", "unit", "freebsd")
    with k.lock:
        socks = [DSock(Conn(), 1, i, "t", None) for i in range(3)]
        for s in socks:
            assert k._bind(s, 8000, True) == 0
        k._close(socks[1])
        g = k.groups[8000]
        assert g.count == 2 and g.slots[:3] == [socks[0], None, socks[2]]
        # id % count == 1 lands on the empty slot: dropped; slot 2 is unreachable
        k.modules.add("ipdivert")
        pkt = dict(af=4, proto=17, src="1.1.1.1", dst="2.2.2.2", sport=1, dport=2, iface="igb0", dir="in")
        assert k._divert(8000, 1, pkt, None, 0) == "drop-hole"
        assert k.counters["dropped_hole"] == 1
        # a new member fills the first empty slot
        d = DSock(Conn(), 1, 9, "t", None)
        assert k._bind(d, 8000, True) == 0 and d.slot == 1 and g.count == 3
