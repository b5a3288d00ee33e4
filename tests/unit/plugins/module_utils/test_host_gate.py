# -*- coding: utf-8 -*-
"""The boot gate (I3): its program, its files, and what it does at boot."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _host_gate
from ansible_collections.divert.fleet.plugins.module_utils._host_gate import deploy_rules, gate_main

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import (
    GROUPS, PF_PRINTED, PF_WANTED, WHOLE, pf_host)

PACKAGE_DIR = "ansible_collections/divert/fleet/plugins/module_utils/"


def _unpacked(program):
    """(shebang line, {name: text}) of a gate program."""
    shebang, _sep, archive = program.partition(b"\n")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return shebang.decode(), dict((name, zf.read(name).decode()) for name in zf.namelist())


def test_gate_program_packs_the_on_host_library(tmp_path):
    shebang, files = _unpacked(_host_gate.gate_program())
    assert shebang == "#!" + sys.executable  # the interpreter Ansible used on the host
    assert _unpacked(_host_gate.gate_program("/usr/local/bin/python3.11"))[0] == "#!/usr/local/bin/python3.11"
    assert "gate_main()" in files["__main__.py"]
    package = os.path.dirname(_host_gate.__file__)
    for name in _host_gate.GATE_PARTS:
        with open(os.path.join(package, name + ".py")) as handle:
            assert files[PACKAGE_DIR + name + ".py"] == handle.read()
    assert _host_gate.gate_program() == _host_gate.gate_program()  # same bytes: an unchanged gate is not rewritten


def test_gate_program_runs_on_its_own(tmp_path):
    """Nothing but the standard library and the program itself: no collection on sys.path."""
    gate = tmp_path / "divert-fleet-gate"
    gate.write_bytes(_host_gate.gate_program())
    gate.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    proc = subprocess.run([str(gate), "--state", str(tmp_path / "missing.json")], cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"no state file" in proc.stderr


def test_gate_program_from_inside_a_zip(tmp_path):
    """AnsiballZ imports module_utils from a zip: each part's source must come from the zip's loader."""
    payload = tmp_path / "payload.zip"
    package = os.path.dirname(_host_gate.__file__)
    with zipfile.ZipFile(str(payload), "w") as zf:
        parts = PACKAGE_DIR.rstrip("/").split("/")
        for depth in range(1, len(parts) + 1):
            zf.writestr("/".join(parts[:depth]) + "/__init__.py", "")
        for name in _host_gate.GATE_PARTS:
            zf.write(os.path.join(package, name + ".py"), PACKAGE_DIR + name + ".py")
    script = ("import sys\n"
              "from ansible_collections.divert.fleet.plugins.module_utils import _host_gate\n"
              "assert '.zip' in _host_gate.__file__, _host_gate.__file__\n"
              "sys.stdout.buffer.write(_host_gate.gate_program())\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env={"PYTHONPATH": str(payload)},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _host_gate.gate_program()


@pytest.mark.parametrize("platform", ["freebsd", "opnsense"])
def test_boot_gate_installed_once_per_platform_and_idempotent(tmp_path, platform):
    """I3 exactly once: rc.d on FreeBSD; on OPNsense the syshook and no enabled rc.d script, which
    OPNsense's rc.freebsd would run a second time."""
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, pf_conf='anchor "divert_fleet"\n',
                                  rc_conf={"divert_fleet_enable": "YES"} if platform == "opnsense" else {})
    result = deploy_rules(host, backend, PF_WANTED, GROUPS, platform=platform)
    assert "/usr/local/libexec/divert-fleet-gate" in result["boot_gate"]
    state = json.loads((tmp_path / "var/db/divert_fleet/state.json").read_text())
    assert state["groups"] == {"8000": 3, "8100": 1} and state["anchor"] == "divert_fleet"
    assert (tmp_path / "var/db/divert_fleet/rules").read_text() == PF_WANTED
    rc_script = tmp_path / "usr/local/etc/rc.d/divert_fleet"
    syshook = tmp_path / "usr/local/etc/rc.syshook.d/start/50-divert_fleet"
    if platform == "freebsd":
        assert "# PROVIDE: divert_fleet" in rc_script.read_text() and "# REQUIRE: LOGIN" in rc_script.read_text()
        assert fake.rc_conf["divert_fleet_enable"] == "YES" and not syshook.exists()
    else:
        assert os.access(str(syshook), os.X_OK) and not rc_script.exists()
        assert "divert_fleet_enable" not in fake.rc_conf and "removed divert_fleet_enable" in result["boot_gate"]
    again = deploy_rules(host, backend, PF_WANTED, GROUPS, platform=platform)
    assert again["boot_gate"] == [] and not again["changed"]


def test_gate_main_loads_when_groups_are_whole(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    deploy_rules(host, backend, PF_WANTED, GROUPS)
    fake.anchor_printed = ""  # after a reboot the anchor is empty
    fake.log[:] = []
    assert gate_main(["--state", "/var/db/divert_fleet/state.json"], host=host) == 0
    assert fake.anchor_printed == PF_PRINTED
    assert fake.index("sysctl -x net.inet.divert.pcblist") < fake.index("pfctl -o none -a divert_fleet -f")


def test_gate_main_leaves_rules_empty_when_groups_never_whole(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    deploy_rules(host, backend, PF_WANTED, GROUPS)
    fake.anchor_printed = ""
    fake.sockets = WHOLE[:1]
    fake.log[:] = []
    assert gate_main(["--timeout", "3"], host=host) == 1
    assert not fake.commands("pfctl -o none -a divert_fleet -f")
    assert fake.commands("pfctl -a divert_fleet -F rules")
