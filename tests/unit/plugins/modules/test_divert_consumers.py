# -*- coding: utf-8 -*-
"""divert_consumers: argument handling and the per-consumer report."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

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
    assert report["action"] == "start" and report["bound"] == 1 and report["live_port"] == 8100
    assert "appidd_flags=(unset)" in result["diff"]["before"]
    assert 'appidd_flags="-p 8100"' in result["diff"]["after"] and 'appidd_enable="YES"' in result["diff"]["after"]
    result, failed = run_module(divert_consumers, {"consumers": [APPID], "backend": "pf"}, monkeypatch,
                                fake.host(tmp_path))
    assert not failed and not result["changed"]


def test_defaults_of_suboptions(monkeypatch, tmp_path):
    fake = _fake()
    result, failed = run_module(divert_consumers, {"consumers": [APPID]}, monkeypatch, fake.host(tmp_path))
    assert not failed and result["consumers"][0]["driver"] == "rc" and result["consumers"][0]["standby_port"] is None


def test_missing_port(monkeypatch, tmp_path):
    consumer = dict(APPID)
    del consumer["port"]
    result, failed = run_module(divert_consumers, {"consumers": [consumer]}, monkeypatch, _fake().host(tmp_path))
    assert failed and "port" in result["msg"]


def test_reference_without_program(monkeypatch, tmp_path):
    consumer = dict(APPID, reference=True)
    result, failed = run_module(divert_consumers, {"consumers": [consumer]}, monkeypatch, _fake().host(tmp_path))
    assert failed and "reference_program" in result["msg"]


# Hostile consumers, whatever the controller sent: refused before any command runs or file is written.
HOSTILE = [
    ({"service": "../../../../tmp/x", "reference": True}, "service \"../../../../tmp/x\" holds '/'"),
    ({"service": "sshd"}, "service \"sshd\" is reserved"),
    ({"service": "divert_fleet"}, "is reserved"),
    ({"rc_vars": {"reboot\n": "x"}}, "rc.conf variable \"reboot\\n\" holds U+000A"),
    ({"rc_vars": {"kld_list": "ipdivert pf"}}, "rc.conf variable \"kld_list\" is reserved"),
    ({"rc_vars": {"pf_rules": "/tmp/x"}}, "rc.conf variable \"pf_rules\" is reserved"),
    ({"rc_vars": {"appidd_flags": "-v & touch /tmp/x &"}}, "holds '&'"),
    ({"rc_vars": {"appidd_flags": "$(reboot)"}}, "holds '$'"),
    ({"rc_vars": {"appidd_flags": '-p "8100'}}, "holds '\"'"),
    ({"rc_vars": {"appidd_flags": "-p 8100\u2028"}}, "U+2028 LINE SEPARATOR"),
    ({"sockets": 33}, "socket count 33 is not a number from 1 to 32"),
    ({"name": "Bad Name"}, "name \"Bad Name\""),
    ({"watch": {"reload": ["/etc/../../tmp/x"]}}, "path \"/etc/../../tmp/x\" is not allowed"),
    ({"watch": {"restart": ["relative.yaml"]}}, "path \"relative.yaml\" is not allowed"),
    ({"standby_port": 8100}, "standby_port 8100 is the consumer's own port"),
    ({"standby_port": 70000}, "divert port 70000 is not a number"),
]


@pytest.mark.parametrize("change, message", HOSTILE)
def test_hostile_consumers_change_nothing(monkeypatch, tmp_path, change, message):
    fake = _fake()
    consumer = dict(APPID, **change)
    result, failed = run_module(divert_consumers, {"consumers": [consumer], "reference_program": "#!x\n"},
                                monkeypatch, fake.host(tmp_path))
    assert failed and message in result["msg"] and "nothing was changed" in result["msg"], result["msg"]
    assert fake.log == []
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [tmp_path / "var/run/divert_fleet.lock"]  # the host-wide lock only


def test_two_consumers_cannot_share_a_service(monkeypatch, tmp_path):
    fake = _fake()
    other = dict(APPID, name="appid2", port=8200)
    result, failed = run_module(divert_consumers, {"consumers": [APPID, other]}, monkeypatch, fake.host(tmp_path))
    assert failed and "already the service of consumer appid" in result["msg"] and fake.log == []
