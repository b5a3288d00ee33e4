# -*- coding: utf-8 -*-
"""Every validation code: the case that triggers it and the nearest case that does not."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import base, codes, report_for


def _set(path, value):
    def mutate(spec):
        target = spec
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


def _rule(**fields):
    """Replace fw1's profile rule with one having these fields."""
    def mutate(spec):
        rule = {"name": "web", "consumer": "ids", "interface": "em0", "protocol": "tcp"}
        rule.update(fields)
        spec["profiles"]["edge"]["rules"] = [{k: v for k, v in rule.items() if v is not None}]
    return mutate


def _both(*mutations):
    def mutate(spec):
        for mutation in mutations:
            mutation(spec)
    return mutate


def _opnsense(spec):
    spec["profiles"]["edge"]["platform"] = "opnsense"


# code -> (mutation that triggers it, nearest mutation that must not)
CASES = {
    "schema": (_set(("consumers", "ids", "sockets"), 33), _set(("consumers", "ids", "sockets"), 31)),
    "unknown-consumer": (_set(("hosts", "fw2", "consumers"), ["appidd"]), _set(("hosts", "fw2", "consumers"), ["appid"])),
    "unknown-profile": (_set(("hosts", "fw1", "profile"), "edgy"), _set(("hosts", "fw1", "profile"), "edge")),
    "duplicate-rule": (
        _set(("hosts", "fw1", "rules"), [{"name": "web", "consumer": "ids", "protocol": "tcp", "interface": "em1"}]),
        _set(("hosts", "fw1", "rules"), [{"name": "web2", "consumer": "ids", "protocol": "tcp", "interface": "em1"}])),
    "socket-limit": (
        _both(_set(("consumers", "appid", "port"), 9000), _set(("consumers", "appid", "sockets"), 30),
              _set(("profiles", "edge", "consumers"), ["ids", "appid"])),
        _both(_set(("consumers", "appid", "port"), 9000), _set(("consumers", "appid", "sockets"), 29),
              _set(("profiles", "edge", "consumers"), ["ids", "appid"]))),
    "port-unbound": (_rule(consumer=None, port=9100), _rule(consumer=None, port=9000)),
    "port-mismatch": (_rule(port=9001), _rule(port=9000)),
    "lb-required": (
        _set(("consumers", "ids", "lb"), False),
        _both(_set(("consumers", "ids", "lb"), False), _set(("consumers", "ids", "sockets"), 1))),
    "pf-inet6": (_rule(family="inet6"), _rule(family="inet")),
    "stateless-lb": (_rule(state="none"), _both(_rule(state="none"), _set(("consumers", "ids", "sockets"), 1))),
    "ports-need-proto": (_rule(protocol="icmp", to_ports=[80]), _rule(protocol=["tcp", "udp"], to_ports=[80])),
    "ipfw-rule-range": (  # [tcp, udp] is two ipfw rules: 65534 and 65535 (the default rule's number)
        _both(_set(("hosts", "fw2", "ipfw"), {"rule_base": 65534, "rule_step": 1, "set": 5, "spare_set": 6}),
              lambda spec: spec["hosts"]["fw2"]["rules"][0].update(protocol=["tcp", "udp"])),
        _both(_set(("hosts", "fw2", "ipfw"), {"rule_base": 65533, "rule_step": 1, "set": 5, "spare_set": 6}),
              lambda spec: spec["hosts"]["fw2"]["rules"][0].update(protocol=["tcp", "udp"]))),
    "family-mismatch": (_rule(to="2001:db8::/32"), _rule(to="192.0.2.0/24")),
    "opnsense-ipfw": (_set(("hosts", "fw2", "platform"), "opnsense"), _set(("hosts", "fw2", "platform"), "freebsd")),
    "lb-ignored": (_set(("consumers", "appid", "sockets"), 2), _set(("consumers", "appid", "sockets"), 1)),
    "lb-degenerate": (_set(("consumers", "ids", "sockets"), 24), _set(("consumers", "ids", "sockets"), 25)),
    "port-reserved": (
        _both(_opnsense, _set(("consumers", "ids", "port"), 8100)),
        _both(_opnsense, _set(("consumers", "ids", "port"), 8099))),
    "unused-consumer": (
        _set(("profiles", "edge", "consumers"), ["ids", "appid"]),
        _both(_set(("profiles", "edge", "consumers"), ["ids", "appid"]),
              _set(("hosts", "fw1", "rules"), [{"name": "app", "port": 9100, "protocol": "udp"}]))),
    "divert-all": (_rule(interface=None, protocol=None), _rule(interface=None, protocol="tcp")),
    "yaml-syntax": None,  # text-level cases: test_loader.py
    "duplicate-key": None,
}


def test_every_code_has_a_case():
    assert sorted(CASES) == sorted(CODES)


def test_base_spec_is_clean():
    report = report_for(base())
    assert report.diagnostics == [], [d.message for d in report.diagnostics]


@pytest.mark.parametrize("code", sorted(c for c in CASES if CASES[c]))
def test_code_triggers(code):
    spec = base()
    CASES[code][0](spec)
    report = report_for(spec)
    found = [d for d in report.diagnostics if d.code == code]
    assert found, codes(report)
    for diag in found:
        assert diag.severity == CODES[code][0]
        assert diag.line and diag.column and diag.file == "spec.yml"
        assert diag.path.startswith("/")


@pytest.mark.parametrize("code", sorted(c for c in CASES if CASES[c]))
def test_nearest_case_is_clean(code):
    spec = base()
    CASES[code][1](spec)
    report = report_for(spec)
    assert code not in codes(report), [d.message for d in report.diagnostics]
    assert report.errors == [], [d.message for d in report.errors]


def test_ipfw_set_31_and_equal_sets():
    spec = base()
    spec["hosts"]["fw2"]["ipfw"] = {"set": 31, "spare_set": 6}
    messages = [d.message for d in report_for(spec).diagnostics if d.code == "ipfw-rule-range"]
    assert any("set 31" in m for m in messages)
    spec["hosts"]["fw2"]["ipfw"] = {"set": 7, "spare_set": 7}
    messages = [d.message for d in report_for(spec).diagnostics if d.code == "ipfw-rule-range"]
    assert any("both set and spare_set" in m for m in messages)


def test_ipfw_rule_count_counts_one_rule_per_protocol():
    spec = base()
    spec["hosts"]["fw2"]["ipfw"] = {"rule_base": 65533, "rule_step": 1}
    spec["hosts"]["fw2"]["rules"][0]["protocol"] = ["tcp", "udp"]  # two ipfw rules: 65533, 65534
    assert "ipfw-rule-range" not in codes(report_for(spec))
    spec["hosts"]["fw2"]["rules"][0]["protocol"] = ["tcp", "udp", "icmp"]
    spec["hosts"]["fw2"]["rules"][0].pop("to_ports")
    assert "ipfw-rule-range" in codes(report_for(spec))


def test_host_override_of_sockets_reaches_the_checks():
    spec = base()
    spec["hosts"]["fw1"]["consumers"] = [{"name": "ids", "sockets": 32}]
    report = report_for(spec)
    degenerate = [d for d in report.diagnostics if d.code == "lb-degenerate"]
    assert len(degenerate) == 1 and "only 1 of the 32" in degenerate[0].message
    assert degenerate[0].path == "/hosts/fw1/consumers/0"


def test_rule_consumer_defined_but_not_on_host_is_port_unbound():
    spec = base()
    spec["hosts"]["fw1"]["rules"] = [{"name": "app", "consumer": "appid", "protocol": "udp"}]
    found = [d for d in report_for(spec).diagnostics if d.code == "port-unbound"]
    assert len(found) == 1 and "does not run" in found[0].message


def test_host_without_backend_after_merge_is_schema_at_host():
    spec = base()
    del spec["hosts"]["fw2"]["backend"]
    found = [d for d in report_for(spec).diagnostics if d.code == "schema"]
    assert [d.path for d in found] == ["/hosts/fw2"]
    assert "backend" in found[0].message


def test_malformed_address_and_port_range_are_schema_errors():
    spec = base()
    spec["profiles"]["edge"]["rules"][0]["to"] = ["10.0.0.300/8"]
    spec["profiles"]["edge"]["rules"][0]["to_ports"] = ["90:80"]
    found = sorted((d.path, d.code) for d in report_for(spec).diagnostics)
    assert ("/profiles/edge/rules/0/to/0", "schema") in found
    assert ("/profiles/edge/rules/0/to_ports/0", "schema") in found


def test_messages_carry_the_numbers():
    spec = base()
    spec["consumers"]["ids"]["sockets"] = 20
    spec["consumers"]["appid"].update(port=9000, sockets=20)
    spec["profiles"]["edge"]["consumers"] = ["ids", "appid"]
    diag = [d for d in report_for(spec).diagnostics if d.code == "socket-limit"][0]
    assert "40 sockets" in diag.message and "ids 20 + appid 20" in diag.message and "32" in diag.message
