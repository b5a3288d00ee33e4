# -*- coding: utf-8 -*-
"""Property tests: generated and mutated specs never make the validator or renderers raise."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

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


# --- hostile characters and YAML 1.1 number forms ---------------------------------------------

from ansible_collections.divert.fleet.plugins.module_utils import _grammar, _schema  # noqa: E402

HOSTILE = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u061c", "\u200e", "\u200f",
           "\u202a", "\u202e", "\u2066", "\u2069", ";", "#", '"', "{", "}", "\\", "$", "`", "&", "|", "<", ">", "(",
           ")", "'", "/", " ", "."]
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE + list("az09_-:")), min_size=1, max_size=12)
# Characters a file may not hold raw (tab, newline and CR LF are a file's own structure).
raw_invisible = st.sampled_from(["\x85", "\u2028", "\u2029", "\r", "\x1b", "\x9b", "\u202e", "\u2066", "\u200f",
                                 "\u061c"])


@SETTINGS
@given(st.sampled_from(_grammar.KINDS), st.text(max_size=20), hostile_text)
def test_grammar_and_schema_pattern_agree_on_any_text(kind, text, tail):
    for value in (text, text + tail, tail + text, text + "\n"):
        by_grammar = _grammar.matches(kind, value)
        assert by_grammar == (re.search(_grammar.schema_pattern(kind), value) is not None
                              and len(value) <= _grammar.MAX_LENGTH.get(kind, len(value)))
        assert (_grammar.shape_problem(kind, value) is None) == by_grammar


@SETTINGS
@given(st.sampled_from(["name", "service", "rc_var", "rc_value", "interface", "anchor", "text", "host"]), hostile_text)
def test_both_validators_agree_on_hostile_strings_in_a_spec(kind, value):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    spec = base()
    if kind == "name":
        spec["profiles"]["edge"]["rules"][0]["name"] = value
    elif kind == "service":
        spec["consumers"]["ids"]["service"] = value
    elif kind == "rc_var":
        spec["consumers"]["ids"]["rc_vars"] = {value: "x"}
    elif kind == "rc_value":
        spec["consumers"]["ids"]["rc_vars"] = {"x": value}
    elif kind == "interface":
        spec["profiles"]["edge"]["rules"][0]["interface"] = value
    elif kind == "anchor":
        spec["pf"] = {"anchor": value}
    elif kind == "text":
        spec["consumers"]["ids"]["description"] = value
    else:
        spec["hosts"][value] = spec["hosts"].pop("fw2")
    fast = jsonschema_rs.Draft202012Validator(_schema.schema()).is_valid(spec)
    full = jsonschema.Draft202012Validator(_schema.schema()).is_valid(spec)
    assert fast == full == _grammar.matches(kind, value)


@SETTINGS
@given(st.integers(0, 12), st.integers(0, 40), raw_invisible)
def test_an_invisible_character_anywhere_is_refused_at_its_place(line_index, column, char):
    lines = dump(base()).split("\n")
    line_index = min(line_index, len(lines) - 2)
    line = lines[line_index] + " # " + "n" * column
    lines[line_index] = line + char + "x"
    report = validate_text("\n".join(lines), file="c.yml")
    (first,) = [d for d in report.diagnostics if d.code == "invisible-character"][:1]
    assert (first.line, first.column) == (line_index + 1, len(line) + 1)
    assert report.errors == [d for d in report.diagnostics if d.code == "invisible-character"]


NUMBER_FORMS = st.one_of(
    st.tuples(st.integers(1, 59), st.integers(0, 59)).map(lambda t: "%d:%02d" % t),   # base 60
    st.integers(1, 65535).map(lambda n: "0x%x" % n),
    st.integers(1, 65535).map(lambda n: "0%o" % n),
    st.integers(1, 65535).map("0b{0:b}".format),
    st.integers(1000, 65535).map(lambda n: "%d_%03d" % divmod(n, 1000)),
    st.integers(1, 65535).map(lambda n: "%d.0" % n),
    st.integers(1, 6).map(lambda n: "%d.0e+%d" % (n, n)),
    st.integers(40, 6000).map(lambda n: "1" * n),
)


@SETTINGS
@given(st.sampled_from(["    port: 9000", "    sockets: 3", "version: 1", "to_ports: [80]"]), NUMBER_FORMS)
def test_yaml_1_1_number_forms_are_refused_where_they_stand(where, form):
    text = dump(base()).replace("to_ports:\n      - 80", "to_ports: [80]")
    assert where in text
    if where == "to_ports: [80]":
        replaced = text.replace(where, "to_ports: [%s]" % form, 1)
    else:
        replaced = text.replace(where, where.rsplit(" ", 1)[0] + " " + form, 1)
    report = validate_text(replaced, file="n.yml")
    found = [d for d in report.diagnostics if d.code == "yaml-number"]
    assert found and not report.valid(), (form, [d.code for d in report.diagnostics])
    line = replaced[:replaced.index(form)].count("\n") + 1
    assert found[0].line == line
    _exercise(report)
