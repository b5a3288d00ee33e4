# -*- coding: utf-8 -*-
"""divert_rules: argument handling, check mode and diff, failures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostLock
from ansible_collections.divert.fleet.plugins.modules import divert_rules
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import (
    IPFW_WANTED, PF_PRINTED, PF_WANTED, FakeFreeBSD)
from ansible_collections.divert.fleet.tests.unit.plugins.modules.module_harness import run_module

WHOLE = [(8000, 10, "suricata")] * 3 + [(8100, 11, "appidd")]
PF_ARGS = {"backend": "pf", "rules": PF_WANTED, "groups": {"8000": 3, "8100": 1}, "boot_gate": False}


def _fake(tmp_path, **kwargs):
    fake = FakeFreeBSD(sockets=WHOLE, rc_conf={"pf_enable": "YES"}, **kwargs)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "pf.conf").write_text('anchor "divert_fleet"\n')
    return fake, fake.host(tmp_path)


def test_pf_apply_then_no_change(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path)
    result, failed = run_module(divert_rules, dict(PF_ARGS), monkeypatch, host)
    assert not failed and result["changed"] and "diff" not in result
    result, failed = run_module(divert_rules, dict(PF_ARGS), monkeypatch, host)
    assert not failed and not result["changed"]


def test_diff_and_check_mode(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path)
    args = dict(PF_ARGS, _ansible_check_mode=True, _ansible_diff=True)
    result, failed = run_module(divert_rules, args, monkeypatch, host)
    assert not failed and result["changed"]
    assert result["diff"]["before"] == "" and "divert-to 8000" in result["diff"]["after"]
    assert fake.anchor_printed == ""


def test_refusal_is_a_failure_with_counts(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path)
    fake.sockets = WHOLE[1:]
    result, failed = run_module(divert_rules, dict(PF_ARGS), monkeypatch, host)
    assert failed and "port 8000: 3 socket(s) declared, 2 bound" in result["msg"]
    assert result["incomplete"] == [{"port": 8000, "expected": 3, "bound": 2}]


def test_rules_required_when_present(monkeypatch, tmp_path):
    result, failed = run_module(divert_rules, {"backend": "pf"}, monkeypatch, FakeFreeBSD().host(tmp_path))
    assert failed and "rules" in result["msg"]


def test_backend_choices(monkeypatch, tmp_path):
    result, failed = run_module(divert_rules, {"backend": "iptables", "rules": ""}, monkeypatch,
                                FakeFreeBSD().host(tmp_path))
    assert failed and "backend" in result["msg"]


def test_bad_groups(monkeypatch, tmp_path):
    result, failed = run_module(divert_rules, dict(PF_ARGS, groups={"x": 1}), monkeypatch,
                                FakeFreeBSD().host(tmp_path))
    assert failed and "divert port \"x\" is not a number" in result["msg"] and "nothing was changed" in result["msg"]


def test_ipfw_same_sets_refused(monkeypatch, tmp_path):
    args = {"backend": "ipfw", "rules": IPFW_WANTED, "set": 5, "spare_set": 5, "boot_gate": False}
    result, failed = run_module(divert_rules, args, monkeypatch, FakeFreeBSD().host(tmp_path))
    assert failed and "must differ" in result["msg"]


def test_absent(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path, anchor_printed=PF_PRINTED)
    result, failed = run_module(divert_rules, {"backend": "pf", "state": "absent", "boot_gate": False},
                                monkeypatch, host)
    assert not failed and result["changed"] and result["rules"] == [] and fake.anchor_printed == ""


# Hostile arguments, whatever the controller sent: refused before any command runs.
HOSTILE = [
    ({"anchor": ""}, "pf anchor is empty"),
    ({"anchor": 'x"\nblock drop all'}, "pf anchor"),
    ({"anchor": "../main"}, "pf anchor"),
    ({"rules": "pass in quick all divert-to 8000\nblock drop all\n"}, "line 2 is not a pass rule"),
    ({"rules": "pass in quick all label \"a\u2028b\" divert-to 8000\n"}, "U+2028 LINE SEPARATOR"),
    ({"groups": {"8000": 33}}, "socket count 33 is not a number from 1 to 32"),
    ({"groups": {"0": 1}}, "divert port 0 is not a number"),
    ({"platform": "opnsense"}, "spec says platform: opnsense"),
]


@pytest.mark.parametrize("change, message", HOSTILE)
def test_hostile_arguments_change_nothing(monkeypatch, tmp_path, change, message):
    fake, host = _fake(tmp_path)
    result, failed = run_module(divert_rules, dict(PF_ARGS, **change), monkeypatch, host)
    assert failed and message in result["msg"], result["msg"]
    assert fake.log == [] and fake.anchor_printed == ""
    assert (tmp_path / "etc" / "pf.conf").read_text() == 'anchor "divert_fleet"\n'


def test_freebsd_declared_on_opnsense_is_refused(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path)
    (tmp_path / "usr/local/sbin").mkdir(parents=True)
    (tmp_path / "usr/local/sbin/configctl").write_text("#!/bin/sh\n")
    result, failed = run_module(divert_rules, dict(PF_ARGS, platform="freebsd"), monkeypatch, host)
    assert failed and "is OPNsense" in result["msg"] and "set platform: opnsense" in result["msg"]
    assert fake.log == []
    # omitted, the platform is read from the host: OPNsense's pf.conf is never touched
    result, failed = run_module(divert_rules, dict(PF_ARGS), monkeypatch, host)
    assert not failed and not fake.commands("pfctl -f /etc/pf.conf")
    assert (tmp_path / "usr/local/etc/inc/plugins.inc.d/divert_fleet.inc").exists()


def test_a_held_lock_fails_after_its_timeout_without_changing_anything(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path)
    clock = [0.0]
    host.clock = lambda: clock[0]
    host.sleep = lambda seconds: clock.__setitem__(0, clock[0] + seconds)
    with HostLock(FakeFreeBSD().host(tmp_path), "another run"):
        result, failed = run_module(divert_rules, dict(PF_ARGS, lock_timeout=5), monkeypatch, host)
    assert failed and "another divert.fleet change holds /var/run/divert_fleet.lock" in result["msg"]
    assert "another run, pid %d" % os.getpid() in result["msg"]
    assert fake.log == []
    result, failed = run_module(divert_rules, dict(PF_ARGS), monkeypatch, host)  # released: it proceeds
    assert not failed and result["changed"]
