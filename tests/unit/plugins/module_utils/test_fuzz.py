# -*- coding: utf-8 -*-
"""Property tests: generated and mutated specs never make the validator or renderers raise."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from ansible_collections.divert.fleet.plugins.module_utils import _plan, _render  # noqa: E402
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES  # noqa: E402
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_text  # noqa: E402
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import (  # noqa: E402
    EXAMPLES, base, dump)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

with open(os.path.join(EXAMPLES, "fleet.yml"), "rb") as _handle:
    EXAMPLE_BYTES = _handle.read()

names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z")
ports = st.one_of(st.integers(min_value=-5, max_value=70000), st.just(9000), st.just(9100), st.text(max_size=5))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.text(max_size=12))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)

rules = st.fixed_dictionaries({"name": names}, optional={
    "consumer": st.sampled_from(["ids", "appid", "ghost"]),
    "port": ports,
    "interface": st.sampled_from(["em0", "igb1", "BAD!", ""]),
    "direction": st.sampled_from(["in", "out", "any", "up"]),
    "family": st.sampled_from(["inet", "inet6", "ipx"]),
    "protocol": st.one_of(st.sampled_from(["tcp", "udp", "icmp", "any", "gre"]),
                          st.lists(st.sampled_from(["tcp", "udp", "icmp"]), max_size=3)),
    "from": st.one_of(st.sampled_from(["any", "10.0.0.0/8", "2001:db8::/32", "300.1.1.1", "::"]),
                      st.lists(st.sampled_from(["192.0.2.1", "10.1.0.0/16", "fe80::1"]), max_size=3)),
    "to_ports": st.lists(st.one_of(st.integers(0, 70000), st.sampled_from(["80:90", "9:1", "x"])), max_size=3),
    "state": st.sampled_from(["keep", "none", "maybe"]),
    "junk": json_values,
})

hosts = st.fixed_dictionaries({}, optional={
    "profile": st.sampled_from(["edge", "nope"]),
    "backend": st.sampled_from(["pf", "ipfw", "npf"]),
    "platform": st.sampled_from(["freebsd", "opnsense"]),
    "consumers": st.lists(st.one_of(st.sampled_from(["ids", "appid", "ghost"]), st.fixed_dictionaries(
        {"name": st.sampled_from(["ids", "appid"])}, optional={"sockets": st.integers(-1, 40)})), max_size=3),
    "rules": st.lists(rules, max_size=4),
    "ipfw": st.fixed_dictionaries({}, optional={"set": st.integers(-1, 40), "spare_set": st.integers(0, 31),
                                                "rule_base": st.integers(0, 70000), "rule_step": st.integers(0, 2000)}),
})

specs = st.fixed_dictionaries({
    "version": st.sampled_from([1, 1, 1, 2, "1"]),
    "consumers": st.dictionaries(st.sampled_from(["ids", "appid", "Bad"]), st.fixed_dictionaries(
        {"port": ports, "service": st.sampled_from(["suricata", "x y"])},
        optional={"sockets": st.integers(-1, 40), "lb": st.one_of(st.booleans(), st.just("no"))}), max_size=2),
    "hosts": st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9.-]{0,6}\Z"), hosts, max_size=3),
}, optional={"profiles": st.dictionaries(st.just("edge"), hosts, max_size=1), "extra": json_values})


def _exercise(report):
    assert all(d.code in CODES and d.message for d in report.diagnostics)
    for diag in report.diagnostics:
        assert diag.line is None or diag.line >= 1
    if report.fleet is not None and not report.errors:
        for host in report.fleet.hosts.values():
            text = _render.render(host)
            assert text.endswith("\n")
            _plan.host_plan(host)


@SETTINGS
@given(specs)
def test_generated_specs_never_raise(spec):
    _exercise(validate_text(dump(spec), file="gen.yml"))


@SETTINGS
@given(st.data())
def test_mutated_example_bytes_never_raise(data):
    raw = bytearray(EXAMPLE_BYTES)
    for _step in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(raw) - 1))
        operation = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if operation == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif operation == "delete":
            del raw[index]
        else:
            raw.insert(index, data.draw(st.sampled_from(list(b":-[]{}&*!|>\t\n #'\"\\"))))
    _exercise(validate_text(bytes(raw), file="mutated.yml"))


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    _exercise(validate_text(text, file="text.yml"))


def test_valid_generated_spec_renders():
    spec = base()
    report = validate_text(dump(spec), file="b.yml")
    assert not report.errors
    _exercise(report)
