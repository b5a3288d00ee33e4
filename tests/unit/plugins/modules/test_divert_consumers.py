# -*- coding: utf-8 -*-
"""divert_consumers: argument handling and the per-consumer report."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.modules import divert_consumers
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import FakeFreeBSD
from ansible_collections.divert.fleet.tests.unit.plugins.modules.module_harness import run_module

APPID = {"name": "appid", "port": 8100, "sockets": 1, "service": "appidd", "rc_vars": {"appidd_flags": "-p 8100"}}


def _fake():
    fake = FakeFreeBSD(rc_conf={"kld_list": "ipdivert"})

    def bind(_argv):
        fake.sockets = [(8100, 7, "appidd")]
    fake.on["service appidd start"] = bind
    return fake


def test_start_and_report(monkeypatch, tmp_path):
    fake = _fake()
    result, failed = run_module(divert_consumers, {"consumers": [APPID], "backend": "pf", "_ansible_diff": True},
                                monkeypatch, fake.host(tmp_path))
    assert not failed and result["changed"]
    report = result["consumers"][0]
    assert report["action"] == "start" and report["bound"] == 1
    assert report["rc_vars_changed"]["appidd_flags"] == {"before": None, "after": "-p 8100"}
    assert 'appidd_enable="YES"' in result["diff"]["after"]
    result, failed = run_module(divert_consumers, {"consumers": [APPID], "backend": "pf"}, monkeypatch,
                                fake.host(tmp_path))
    assert not failed and not result["changed"]


def test_defaults_of_suboptions(monkeypatch, tmp_path):
    fake = _fake()
    result, failed = run_module(divert_consumers, {"consumers": [APPID]}, monkeypatch, fake.host(tmp_path))
    assert not failed and result["withdrawn"] == []


def test_missing_port(monkeypatch, tmp_path):
    consumer = dict(APPID)
    del consumer["port"]
    result, failed = run_module(divert_consumers, {"consumers": [consumer]}, monkeypatch, _fake().host(tmp_path))
    assert failed and "port" in result["msg"]


def test_reference_without_program(monkeypatch, tmp_path):
    consumer = dict(APPID, reference=True)
    result, failed = run_module(divert_consumers, {"consumers": [consumer]}, monkeypatch, _fake().host(tmp_path))
    assert failed and "reference_program" in result["msg"]
