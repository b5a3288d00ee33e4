"""Twin test helpers: a handle on one twin host, and a consumer bound on a port.

Imported by conftest.py and the tests (a module of its own name: `conftest` may name another
directory's conftest when several test trees run in one pytest session)."""
import json
import os
import subprocess
import sys

TWIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TWIN)
from twinlib import proto  # noqa: E402

TWINCTL = os.path.join(TWIN, "twinctl")
FILES = os.path.join(TWIN, "tests", "files")
CHECKOUT = os.path.dirname(os.path.dirname(TWIN))
# What a rollout must never cause; every one of them is in the report.
LOSS_COUNTERS = ("dropped_noport", "dropped_nodivert", "dropped_full", "swallowed", "flows_remapped",
                 "flows_undiverted", "incomplete_loads", "withdraw_violations")


def losses(report):
    return {k: report[k] for k in LOSS_COUNTERS}


def wait_until(predicate, timeout=30.0, what="condition"):
    """Poll for an event the twin does not push (a file a consumer writes); not a timing test."""
    import time
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError("timed out waiting for %s" % what)


class Host:
    def __init__(self, root, name, flavour):
        self.root, self.name, self.flavour = root, name, flavour
        self.dir = os.path.join(root, name)

    def twinctl(self, *args, check=True):
        r = subprocess.run([sys.executable, TWINCTL] + list(args) + ["--root", self.root],
                           capture_output=True, text=True)
        if check and r.returncode:
            raise AssertionError(r.stderr)
        return r

    def sh(self, script, check=False):
        """Run a shell command inside the host; returns CompletedProcess."""
        pid = open(os.path.join(self.dir, "kernel.pid")).read().strip()
        r = subprocess.run(["nsenter", "-t", pid, "-m", "--", "/usr/bin/env", "-i", "HOME=/root",
                            "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
                            "/bin/sh", "-c", script], capture_output=True, text=True)
        if check and r.returncode:
            raise AssertionError("%s\nrc=%d\n%s%s" % (script, r.returncode, r.stdout, r.stderr))
        return r

    def call(self, **req):
        r = proto.call(req, self.dir)
        if "error" in r:
            raise AssertionError(r.get("trace") or r["error"])
        return r

    def write(self, path, text):
        r = subprocess.run(["nsenter", "-t", open(os.path.join(self.dir, "kernel.pid")).read().strip(), "-m",
                            "--", "/bin/sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path],
                           input=text, text=True, capture_output=True)
        assert r.returncode == 0, r.stderr

    def install_consumer(self, port=8000, sockets=1, lb=1, enable=True, mode="reflect"):
        self.sh("cp %s/twinconsumer.py /usr/local/bin/twinconsumer && "
                "cp %s/twinconsumer.rc /usr/local/etc/rc.d/twinconsumer" % (FILES, FILES), check=True)
        self.sh("sysrc -q twinconsumer_port=%d twinconsumer_sockets=%d twinconsumer_lb=%d twinconsumer_enable=%s "
                "twinconsumer_mode=%s" % (port, sockets, lb, "YES" if enable else "NO", mode), check=True)

    def wait_sockets(self, port, count, timeout=10):
        r = self.call(op="wait_sockets", port=port, count=count, timeout=timeout)
        assert r["ok"], r
        return r

    def flow(self, packets=1, name=None, end=True, **f):
        base = dict(af=4, proto=6, src="192.0.2.10", dst="10.1.2.3", sport=40000, dport=80,
                    iface="igb0", dir="in")
        base.update(f)
        return self.call(op="flow", flow=base, packets=packets, name=name, end=end)

    def flows(self, count, packets=1, name=None, end=True, **f):
        """`count` flows in one request, source ports 20000, 20001, ...; their replies."""
        base = dict(af=4, proto=6, src="192.0.2.10", dst="10.1.2.3", sport=20000, dport=80,
                    iface="igb0", dir="in")
        base.update(f)
        return self.call(op="flows", flow=base, count=count, packets=packets, name=name, end=end)["flows"]

    def more(self, name, packets=1, end=False, **extra):
        return self.call(op="flow_more", name=name, packets=packets, end=end, **extra)

    def report(self, timeout=10):
        self.call(op="drain", timeout=timeout)
        return self.call(op="report")

    def pf_load(self, text, anchor=None):
        self.write("/tmp/twin-test-rules.conf" if False else "/etc/twin-test.conf", text)
        return self.sh("pfctl %s-f /etc/twin-test.conf" % ("-a %s " % anchor if anchor else ""))


def divert_setup(h, sockets, port=8000, lb=1, mode="reflect"):
    """ipdivert + pf enabled + a consumer with `sockets` sockets bound."""
    h.sh("kldload -n ipdivert pf && pfctl -e", check=False)
    h.install_consumer(port=port, sockets=sockets, lb=lb, mode=mode)
    h.sh("service twinconsumer start", check=True)
    h.wait_sockets(port, sockets if lb else 1)
