# -*- coding: utf-8 -*-
"""divert_rules: argument handling, check mode and diff, failures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
    assert failed and "groups must map port numbers" in result["msg"]


def test_ipfw_same_sets_refused(monkeypatch, tmp_path):
    args = {"backend": "ipfw", "rules": IPFW_WANTED, "set": 5, "spare_set": 5, "boot_gate": False}
    result, failed = run_module(divert_rules, args, monkeypatch, FakeFreeBSD().host(tmp_path))
    assert failed and "must differ" in result["msg"]


def test_absent(monkeypatch, tmp_path):
    fake, host = _fake(tmp_path, anchor_printed=PF_PRINTED)
    result, failed = run_module(divert_rules, {"backend": "pf", "state": "absent", "boot_gate": False},
                                monkeypatch, host)
    assert not failed and result["changed"] and result["rules"] == [] and fake.anchor_printed == ""
