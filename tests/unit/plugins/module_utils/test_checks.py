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
    # the default anchor divert_fleet plus ":" leaves 50 characters for a rule name (pfctl: at most 63)
    "label-length": (_rule(name="w" * 51), _rule(name="w" * 50)),
    "port-reserved": (
        _both(_opnsense, _set(("consumers", "ids", "port"), 8100)),
        _both(_opnsense, _set(("consumers", "ids", "port"), 8099))),
    "unused-consumer": (
        _set(("profiles", "edge", "consumers"), ["ids", "appid"]),
        _both(_set(("profiles", "edge", "consumers"), ["ids", "appid"]),
              _set(("hosts", "fw1", "rules"), [{"name": "app", "port": 9100, "protocol": "udp"}]))),
    "divert-all": (_rule(interface=None, protocol=None), _rule(interface=None, protocol="tcp")),
    # rc.d/pf restarted by the consumer role would reload or disable the whole ruleset
    "reserved-service": (_set(("consumers", "ids", "service"), "pf"), _set(("consumers", "ids", "service"), "pf_ids")),
    # one service on two consumers of one host; the same service on two hosts is fine
    "shared-service": (
        _both(_set(("consumers", "appid", "service"), "suricata"), _set(("profiles", "edge", "consumers"), ["ids", "appid"])),
        _set(("consumers", "appid", "service"), "suricata")),
    "reserved-rc-var": (_set(("consumers", "ids", "rc_vars"), {"pf_rules": "/tmp/x.conf"}),
                        _set(("consumers", "ids", "rc_vars"), {"suricata_rules": "/tmp/x.conf"})),
    "unsafe-rc-value": (_set(("consumers", "ids", "rc_vars"), {"suricata_flags": "-v & touch /tmp/x &"}),
                        _set(("consumers", "ids", "rc_vars"), {"suricata_flags": "-v --set x=y,z"})),
    "interface-keyword": (_rule(interface="proto"), _rule(interface="proto0")),
    "standby-port": (
        _both(_set(("consumers", "ids", "driver"), "reflector"), _set(("consumers", "ids", "standby_port"), 9000)),
        _both(_set(("consumers", "ids", "driver"), "reflector"), _set(("consumers", "ids", "standby_port"), 9001))),
    "opnsense-ids": (
        _both(_set(("consumers", "ids", "driver"), "opnsense-ids"), _set(("consumers", "ids", "port"), 8000)),
        _both(_opnsense, _set(("consumers", "ids", "driver"), "opnsense-ids"), _set(("consumers", "ids", "port"), 8000))),
    "suricata-listeners": (
        _both(_set(("consumers", "ids", "driver"), "suricata"), _set(("consumers", "ids", "sockets"), 17)),
        _both(_set(("consumers", "ids", "driver"), "suricata"), _set(("consumers", "ids", "sockets"), 16))),
    "suricata-lb": (
        _set(("consumers", "ids", "driver"), "suricata"),
        _both(_set(("consumers", "ids", "driver"), "suricata"), _set(("consumers", "ids", "sockets"), 1))),
    "reload-missing": (
        _set(("consumers", "ids", "watch"), {"reload": ["/usr/local/etc/suricata/rules/local.rules"]}),
        _both(_set(("consumers", "ids", "watch"), {"reload": ["/usr/local/etc/suricata/rules/local.rules"]}),
              _set(("consumers", "ids", "reload"), "SIGUSR2"))),
    "yaml-syntax": None,  # text-level cases: test_loader.py and the hostile corpus (test_hostile.py)
    "duplicate-key": None,
    "invisible-character": None,
    "yaml-number": None,
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
    spec["profiles"]["edge"]["rules"][0]["state"] = "none"
    report = report_for(spec)
    stateless = [d for d in report.diagnostics if d.code == "stateless-lb"]
    assert len(stateless) == 1 and "group of 32 sockets" in stateless[0].message
    assert "one socket, slot 31" in stateless[0].message  # 0x58c184bf % 32


def test_every_group_size_is_clean_under_pf():
    """The seed kernel hashes the state id: no pf group size from 1 to 32 earns a load-balancing warning."""
    for size in range(1, 33):
        spec = base()
        spec["consumers"]["ids"]["sockets"] = size
        assert codes(report_for(spec)) == [], size


def test_lb_ignored_names_the_one_socket():
    spec = base()
    spec["consumers"]["appid"]["sockets"] = 4
    (diag,) = [d for d in report_for(spec).diagnostics if d.code == "lb-ignored"]
    assert "one socket, slot 3 of 4" in diag.message and diag.path == "/hosts/fw2/consumers/0"


def test_pf_inet6_is_a_warning_naming_both_kernels():
    spec = base()
    spec["profiles"]["edge"]["rules"][0]["family"] = "inet6"
    report = report_for(spec)
    (diag,) = [d for d in report.diagnostics if d.code == "pf-inet6"]
    assert diag.severity == "warning" and report.errors == []
    assert "diverts it" in diag.message and "pf_test6" in diag.message and "uninspected" in diag.message


def test_label_length_counts_the_host_anchor():
    spec = base()
    spec["pf"] = {"anchor": "a" * 30}
    spec["profiles"]["edge"]["rules"][0]["name"] = "r" * 33  # 30 + 1 + 33 = 64
    (diag,) = [d for d in report_for(spec).diagnostics if d.code == "label-length"]
    assert diag.path == "/profiles/edge/rules/0/name" and "64 characters" in diag.message
    assert "at most 32 characters" in diag.message
    spec["profiles"]["edge"]["rules"][0]["name"] = "r" * 32
    assert "label-length" not in codes(report_for(spec))


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


def test_standby_port_of_another_consumer_and_of_a_one_instance_driver():
    spec = base()
    spec["profiles"]["edge"]["consumers"] = ["ids", "appid"]
    spec["consumers"]["ids"].update(driver="suricata", standby_port=9100, sockets=1)
    (diag,) = [d for d in report_for(spec).diagnostics if d.code == "standby-port"]
    assert "which consumer \"appid\" uses" in diag.message and diag.path == "/consumers/ids/standby_port"
    spec = base()
    spec["consumers"]["ids"]["standby_port"] = 9001
    (diag,) = [d for d in report_for(spec).diagnostics if d.code == "standby-port"]
    assert "driver rc" in diag.message and "runs one instance only" in diag.message


def test_standby_port_of_a_consumer_that_shares_its_port():
    spec = base()
    spec["profiles"]["edge"]["consumers"] = ["ids", "appid"]
    spec["consumers"]["appid"]["port"] = 9000  # one group of ids and appid on port 9000
    spec["consumers"]["ids"].update(driver="suricata", standby_port=9001)
    (diag,) = [d for d in report_for(spec).diagnostics if d.code == "standby-port"]
    assert "shares port 9000 with consumer \"appid\" on host \"fw1\"" in diag.message, diag.message
    assert diag.path == "/consumers/ids/standby_port" and diag.severity == "error"
    # the nearest that passes: the same shared port, no standby port
    del spec["consumers"]["ids"]["standby_port"]
    assert "standby-port" not in codes(report_for(spec))


def test_opnsense_ids_on_its_own_port_is_not_reserved():
    spec = base()
    spec["profiles"]["edge"]["platform"] = "opnsense"
    spec["consumers"]["ids"].update(driver="opnsense-ids", port=8000)
    assert "port-reserved" not in codes(report_for(spec))
    spec["consumers"]["ids"].update(driver="rc")
    assert "port-reserved" in codes(report_for(spec))
