# -*- coding: utf-8 -*-
"""The schema and _grammar agree, and the two validators (jsonschema-rs, jsonschema) give one verdict."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _grammar, _schema
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import base

# Where each string kind of _grammar sits in the schema (JSON Pointer into the schema).
SCHEMA_KINDS = {
    "/$defs/name": "name",
    "/$defs/hostname": "host",
    "/$defs/safeText": "text",
    "/$defs/consumer/properties/service": "service",
    "/$defs/consumer/properties/rc_vars/propertyNames": "rc_var",
    "/$defs/consumer/properties/rc_vars/additionalProperties": "rc_value",
    "/$defs/address": "address",
    "/$defs/portMatch/anyOf/1": "port_range",
    "/$defs/rule/properties/interface": "interface",
    "/$defs/pfSettings/properties/anchor": "anchor",
    "/$defs/hostPath": "path",
}


def _at(document, pointer):
    for part in pointer.split("/")[1:]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def _patterns(node, where=""):
    if isinstance(node, dict):
        for key, sub in node.items():
            if key == "pattern":
                yield where, sub
            else:
                yield from _patterns(sub, "%s/%s" % (where, key))
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _patterns(sub, "%s/%d" % (where, index))


def test_every_schema_pattern_is_a_grammar_pattern():
    schema = _schema.schema()
    found = dict(_patterns(schema))
    assert sorted(found) == sorted(SCHEMA_KINDS)
    for pointer, kind in SCHEMA_KINDS.items():
        assert found[pointer] == _grammar.schema_pattern(kind), pointer
        assert _at(schema, pointer).get("maxLength") == _grammar.MAX_LENGTH.get(kind), pointer


def test_the_default_anchor_is_the_grammar_s():
    anchor = _at(_schema.schema(), "/$defs/pfSettings/properties/anchor")
    assert anchor["default"] == _grammar.DEFAULT_ANCHOR
    assert _grammar.problem("anchor", _grammar.DEFAULT_ANCHOR) is None


# kind -> a function placing a string where the schema checks that kind, in the small valid spec.
def _put(kind, value):
    spec = base()
    if kind == "name":
        spec["consumers"][value] = spec["consumers"].pop("appid")
        spec["hosts"]["fw2"]["consumers"] = [value]
        spec["hosts"]["fw2"]["rules"][0]["consumer"] = value
    elif kind == "host":
        spec["hosts"][value] = spec["hosts"].pop("fw2")
    elif kind == "text":
        spec["consumers"]["ids"]["description"] = value
    elif kind == "service":
        spec["consumers"]["ids"]["service"] = value
    elif kind == "rc_var":
        spec["consumers"]["ids"]["rc_vars"] = {value: "YES"}
    elif kind == "rc_value":
        spec["consumers"]["ids"]["rc_vars"] = {"suricata_flags": value}
    elif kind == "address":
        spec["profiles"]["edge"]["rules"][0]["to"] = value
    elif kind == "port_range":
        spec["profiles"]["edge"]["rules"][0]["to_ports"] = [value]
    elif kind == "interface":
        spec["profiles"]["edge"]["rules"][0]["interface"] = value
    elif kind == "anchor":
        spec["pf"] = {"anchor": value}
    return spec


GOOD = {"name": "web", "host": "fw-3", "text": "an IPS", "service": "suricata", "rc_var": "suricata_flags",
        "rc_value": "-v", "address": "10.0.0.0/8", "port_range": "80:90", "interface": "igb0",
        "anchor": "divert_fleet"}
HOSTILE_SUFFIXES = ["\n", "\r", "\r\n", "\x00", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u2066",
                    "\u200f", "\u061c", " ", ";", "#", '"', "{", "}", "\\", "$(id)", "`id`", "&", "|", "<", ">", "'",
                    "(", ")", "/../x", "\n block drop all"]


def _cases():
    for kind, good in sorted(GOOD.items()):
        yield kind, good, True
        for suffix in HOSTILE_SUFFIXES:
            value = good + suffix
            yield kind, value, _grammar.matches(kind, value)
            yield kind, suffix + good, _grammar.matches(kind, suffix + good)


@pytest.mark.parametrize("kind, value, allowed", list(_cases()))
def test_both_validators_give_the_grammar_s_verdict(kind, value, allowed):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    spec = _put(kind, value)
    fast = jsonschema_rs.Draft202012Validator(_schema.schema()).is_valid(spec)
    full = jsonschema.Draft202012Validator(_schema.schema()).is_valid(copy.deepcopy(spec))
    assert fast == full == allowed, (kind, value)


def test_a_spec_the_compiled_validator_refuses_is_never_valid(monkeypatch):
    """If the explaining library finds nothing where jsonschema-rs refuses (how a final newline once
    passed every `$` pattern), the verdict still stands, with a diagnostic at the document."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    pytest.importorskip("jsonschema")

    class Lenient:
        def iter_errors(self, _data):
            return iter(())

    monkeypatch.setitem(_schema._cache, "fast", jsonschema_rs.validator_for({"not": {}}))
    monkeypatch.setitem(_schema._cache, "full", Lenient())
    from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_data
    report = validate_data(base())
    assert not report.valid()
    (diag,) = [d for d in report.errors if d.code == "schema"]
    assert diag.path == "" and "jsonschema-rs refuses it" in diag.message


def test_the_explanation_is_bounded(monkeypatch):
    monkeypatch.setattr(_schema, "MAX_EXPLAINED", 5)
    spec = base()
    spec["profiles"]["edge"]["rules"][0]["to_ports"] = [0] * 200
    from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_data
    report = validate_data(spec)
    schema = [d for d in report.errors if d.code == "schema"]
    assert len(schema) == 6 and "and at least 1 more schema diagnostic like the 5 above" in schema[-1].message
