# -*- coding: utf-8 -*-
"""divert_sockets: argument handling, reading and waiting."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.modules import divert_sockets
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import FakeFreeBSD
from ansible_collections.divert.fleet.tests.unit.plugins.modules.module_harness import run_module

BOUND = [(8000, 10, "divert-reflector")] * 3


def test_reads_sockets(monkeypatch, tmp_path):
    fake = FakeFreeBSD(sockets=BOUND)
    result, failed = run_module(divert_sockets, {}, monkeypatch, fake.host(tmp_path))
    assert not failed and not result["changed"]
    assert result["sockets"] == {"8000": {"port": 8000, "bound": 3, "pids": [10], "commands": ["divert-reflector"]}}
    # counted from the pcblist (one record per socket), attributed from sockstat's rows
    assert result["source"] == "pcblist" and result["incomplete"] == []
    assert fake.log == ["sysctl -x net.inet.divert.pcblist", "sockstat -4 -P divert --libxo json"]


def test_wait_for_string_keys_from_yaml(monkeypatch, tmp_path):
    fake = FakeFreeBSD(sockets=BOUND)
    result, failed = run_module(divert_sockets, {"wait_for": {"8000": "3"}, "timeout": 1}, monkeypatch,
                                fake.host(tmp_path))
    assert not failed and result["incomplete"] == []


def test_wait_for_timeout_fails_with_counts(monkeypatch, tmp_path):
    fake = FakeFreeBSD(sockets=BOUND[:1])
    result, failed = run_module(divert_sockets, {"wait_for": {8000: 3}, "timeout": 2}, monkeypatch,
                                fake.host(tmp_path, name="fw9"))
    assert failed
    assert "host fw9 port 8000: 3 socket(s) declared, 1 bound" in result["msg"]
    assert result["incomplete"] == [{"port": 8000, "expected": 3, "bound": 1}]


def test_check_mode_reports_instead_of_waiting(monkeypatch, tmp_path):
    fake = FakeFreeBSD(sockets=BOUND[:1])
    result, failed = run_module(divert_sockets, {"wait_for": {8000: 3}, "_ansible_check_mode": True}, monkeypatch,
                                fake.host(tmp_path))
    assert not failed and result["incomplete"] == [{"port": 8000, "expected": 3, "bound": 1}]
    assert len(fake.commands("sysctl -x net.inet.divert.pcblist")) == 1


def test_bad_wait_for(monkeypatch, tmp_path):
    result, failed = run_module(divert_sockets, {"wait_for": {"web": 3}}, monkeypatch, FakeFreeBSD().host(tmp_path))
    assert failed and "wait_for must map port numbers" in result["msg"]


def test_unknown_option(monkeypatch, tmp_path):
    result, failed = run_module(divert_sockets, {"ports": [1]}, monkeypatch, FakeFreeBSD().host(tmp_path))
    assert failed and "Unsupported parameters" in result["msg"]
