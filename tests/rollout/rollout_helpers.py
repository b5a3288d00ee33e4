# -*- coding: utf-8 -*-
"""Helpers of the rollout tests: twin hosts, the playbook, the twin's report.

A module of its own name (not conftest), so that it stays importable when several test trees
run in one pytest session."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWIN = os.path.join(ROOT, "tests", "twin")
BIN = os.path.dirname(sys.executable)
EXAMPLE = os.path.join(ROOT, "examples", "fleet.yml")
# Every counter of the twin's report that a rollout must leave at 0 (tests/twin/README.md).
LOSS = ("dropped_noport", "dropped_nodivert", "dropped_full", "swallowed", "flows_remapped",
        "flows_undiverted", "incomplete_loads", "withdraw_violations")
# A DNS flow that fw-edge-01's classify-dns rule diverts to the classifier (port 8400).
DNS_FLOW = dict(af=4, proto=17, src="198.18.0.1", sport=50000, dst="203.0.113.53", dport=53,
                iface="igb0", dir="in")

# the rollout tests' mark: pytestmark = needs_twin
needs_twin = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not os.path.exists(os.path.join(BIN, "ansible-playbook")),
    reason="the twin needs root, unshare and ansible-playbook beside this Python")


def twinctl(root, command, *args):
    out = subprocess.run([sys.executable, os.path.join(TWIN, "twinctl"), command, "--root", root] + list(args),
                         check=True, stdout=subprocess.PIPE, universal_newlines=True)
    return out.stdout


def on_host(root, host, *command):
    """stdout of a command on a twin host; a failing command (an anchor not loaded yet) gives ''."""
    out = subprocess.run([sys.executable, os.path.join(TWIN, "twinctl"), "exec", "--root", root, "--host", host,
                          "--"] + list(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True)
    return out.stdout if out.returncode == 0 else ""


def report(root):
    return json.loads(twinctl(root, "report", "--format", "json", "--drain"))


def losses(rep):
    return dict((k, rep[k]) for k in LOSS)


def growth(before, after):
    """Per host, how much each loss counter grew between two reports."""
    return dict((host, dict((k, after["hosts"][host][k] - before["hosts"][host][k]) for k in LOSS))
                for host in after["hosts"])


def host_call(root, host, **request):
    """A request to one twin host's kernel (a deterministic flow, for instance)."""
    sys.path.insert(0, TWIN)
    from twinlib import proto
    reply = proto.call(request, os.path.join(root, host))
    assert "error" not in reply, reply
    return reply


def site(root, spec, *extra, **env_extra):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1", **env_extra)
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "divert.fleet.site", "-i",
                           os.path.join(root, "inventory.yml"), "-e", "fleet_spec=%s" % spec] + list(extra),
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)


def recap(output):
    """{host: {'ok': n, 'changed': n, 'failed': n}} from a play recap."""
    hosts = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        if ":" in line and "ok=" in line:
            name, counts = line.split(":", 1)
            hosts[name.strip()] = dict((k, int(v)) for k, v in (p.split("=") for p in counts.split()))
    return hosts


def wait_until(predicate, timeout=30.0, what="condition"):
    """Poll an observable event (the twin has no push channel for rule loads)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError("timed out waiting for %s" % what)


def edit(spec, mutate, out=None):
    """Change a spec file (or write the changed spec to `out`)."""
    with open(spec) as handle:
        data = yaml.safe_load(handle)
    mutate(data)
    with open(out or spec, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    return out or spec


def fleet_up(root, spec):
    """Twin hosts for every host of `spec` (tests/twin/fleetctl), with its inventory."""
    subprocess.run([sys.executable, os.path.join(TWIN, "fleetctl"), "up", "--root", root, "--spec", spec,
                    "--divert-fleet", os.path.join(BIN, "divert-fleet")], check=True, stdout=subprocess.DEVNULL)


def stopped(root, host, pid):
    """Whether process `pid` of a twin host has ended (the twin's hosts share the process table)."""
    try:
        with open("/proc/%d/status" % int(pid)) as handle:
            return "\nState:\tZ" in handle.read()
    except (OSError, ValueError):
        return True
