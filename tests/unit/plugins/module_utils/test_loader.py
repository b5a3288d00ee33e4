# -*- coding: utf-8 -*-
"""The loader: positions, duplicate keys, and bad input that must never raise."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _loader
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file, validate_text

SPEC = """\
version: 1
consumers:
  ids:
    port: 9000
    sockets: 3
    service: suricata
hosts:
  fw1:
    backend: pf
    platform: freebsd
    consumers: [ids]
    rules:
      - {name: web, consumer: ids, protocol: tcp, interface: em0}
"""


def test_positions_of_values_and_keys():
    doc = _loader.load_text(SPEC, file="f.yml")
    assert doc.diagnostics == []
    assert doc.position(("consumers", "ids", "port")) == (4, 11)
    assert doc.position(("consumers", "ids", "port"), key=True) == (4, 5)
    assert doc.position(("hosts", "fw1", "rules", 0, "protocol")) == (13, 46)
    assert doc.position(("hosts", "fw1", "consumers", 0)) == (11, 17)
    # a path below a leaf falls back to the nearest node that has a position
    assert doc.position(("hosts", "fw1", "rules", 0, "nope", 3)) == (13, 9)


def test_duplicate_key_is_refused_at_the_second_key():
    text = SPEC.replace("    sockets: 3\n", "    sockets: 3\n    sockets: 5\n")
    doc = _loader.load_text(text, file="f.yml")
    [diag] = doc.diagnostics
    assert diag.code == "duplicate-key"
    assert (diag.line, diag.column, diag.path) == (6, 5, "/consumers/ids/sockets")
    assert "line 5, column 5" in diag.message
    assert doc.data["consumers"]["ids"]["sockets"] == 3


def test_unknown_key_points_at_the_key_with_a_suggestion():
    report = validate_text(SPEC.replace("sockets: 3", "sokets: 3"), file="f.yml")
    diag = [d for d in report.errors if "sokets" in d.message][0]
    assert (diag.code, diag.line, diag.column, diag.path) == ("schema", 5, 5, "/consumers/ids/sokets")
    assert 'did you mean "sockets"' in diag.message


def test_out_of_range_names_the_range():
    report = validate_text(SPEC.replace("port: 9000", "port: 70000"), file="f.yml")
    [diag] = report.errors
    assert (diag.line, diag.column, diag.path) == (4, 11, "/consumers/ids/port")
    assert "70000" in diag.message and "1..65535" in diag.message


def test_missing_key_points_at_the_mapping():
    report = validate_text(SPEC.replace("    service: suricata\n", ""), file="f.yml")
    [diag] = [d for d in report.errors if d.code == "schema"]
    assert diag.path == "/consumers/ids" and diag.line == 4
    assert '"service"' in diag.message


def test_any_of_reports_the_fitting_alternative():
    # a consumer reference given as a mapping: the cause is inside the mapping branch
    report = validate_text(SPEC.replace("consumers: [ids]", "consumers: [{name: ids, sockets: 99}]"), file="f.yml")
    [diag] = [d for d in report.errors if d.code == "schema"]
    assert diag.path == "/hosts/fw1/consumers/0/sockets"
    assert "99" in diag.message and "1..32" in diag.message


def test_rule_without_target_says_what_it_needs():
    report = validate_text(SPEC.replace("consumer: ids, protocol", "protocol"), file="f.yml")
    diag = [d for d in report.errors if d.code == "schema"][0]
    assert diag.path == "/hosts/fw1/rules/0"
    assert '"consumer" or "port"' in diag.message


def test_statement_ending_characters_are_refused():
    for bad in ['em0;', 'em0"', "em0 #x", "em{0}", "em0\\\\"]:
        report = validate_text(SPEC.replace("interface: em0", "interface: '%s'" % bad), file="f.yml")
        assert [d.code for d in report.errors] == ["schema"], bad


@pytest.mark.parametrize("raw, code, where", [
    (b"", "schema", (1, 1)),
    (b"   \n\n", "schema", (1, 1)),
    (b"# only a comment\n", "schema", (1, 1)),
    (b"- a\n- b\n", "schema", (1, 1)),
    (b"just a string\n", "schema", (1, 1)),
    (b"version: 1\nconsumers:\n\tids: {}\n", "yaml-syntax", (3, 1)),
    (b"version: 1\nname: caf\xe9\n", "yaml-syntax", (2, 10)),
    (b"\x7fELF\x02\x01\x01\x00\x00", "yaml-syntax", (1, 8)),
    (b"a: [1, 2\n", "yaml-syntax", None),
    (b"a: 1\n---\nb: 2\n", "yaml-syntax", None),
    (b"a: !!python/object:os.system x\n", "yaml-syntax", (1, 4)),
    (b"a: *nothing\n", "yaml-syntax", None),
    (b"[" * 5000 + b"]" * 5000, "yaml-syntax", None),
    (b"a: &x [*x]\n", "yaml-syntax", None),
    (b"? [a, b]\n: c\n", "schema", (1, 3)),
])
def test_bad_input_is_one_diagnostic(raw, code, where):
    report = validate_text(raw, file="bad.yml")
    assert report.errors, raw
    assert report.errors[0].code == code
    if where:
        assert (report.errors[0].line, report.errors[0].column) == where


def test_billion_laughs_is_bounded():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join(["*a%d" % (level - 1)] * 10)
        lines.append("a%d: &a%d [%s]" % (level, level, refs))
    report = validate_text("\n".join(lines) + "\n", file="lol.yml")
    [diag] = report.errors
    assert diag.code == "yaml-syntax" and "billion laughs" in diag.message


def test_aliases_within_budget_are_expanded():
    text = SPEC.replace("consumers:\n  ids:", "consumers:\n  ids: &ids").rstrip("\n")
    text += "\n      - {name: web2, consumer: ids, protocol: udp, interface: em1}\n"
    assert validate_text(text, file="f.yml").errors == []


def test_merge_keys_are_supported():
    text = """\
version: 1
x-common: &common {service: suricata, sockets: 3}
consumers:
  ids: {<<: *common, port: 9000}
hosts:
  fw1: {backend: pf, platform: freebsd, consumers: [ids],
        rules: [{name: web, consumer: ids, protocol: tcp}]}
"""
    report = validate_text(text, file="f.yml")
    # x-common is not part of the spec: one unknown key, and the merge itself worked
    assert [d.path for d in report.errors] == ["/x-common"]
    assert report.fleet.hosts["fw1"].consumers[0].sockets == 3


def test_missing_and_unreadable_files_raise_spec_file_error(tmp_path):
    with pytest.raises(_loader.SpecFileError) as info:
        validate_file(str(tmp_path / "nope.yml"))
    assert "nope.yml" in str(info.value)
    with pytest.raises(_loader.SpecFileError):
        validate_file(str(tmp_path))  # a directory


def test_oversized_file_is_refused_naming_the_option(tmp_path):
    big = tmp_path / "big.yml"
    with open(str(big), "wb") as handle:
        handle.write((b"#" + b" padding" * 124 + b"\n") * 3 * 1024)
    with pytest.raises(_loader.SpecFileError) as info:
        validate_file(str(big), _loader.Limits(max_mib=2))
    assert "larger than 2 MiB (--max-mib)" in str(info.value)
    assert validate_file(str(big), _loader.Limits(max_mib=3.5)).errors[0].code == "schema"  # empty document


def test_the_default_limits_admit_a_fleet_of_50000_hosts():
    assert _loader.MAX_MIB * 1024 * 1024 > 50000 * 180 * 2  # the benchmark's fleet: 175 bytes a host
    assert _loader.MAX_VALUES > 50000 * 20  # and 19.5 values a host


def test_too_many_values_names_the_option():
    text = "version: 1\nx: [%s]\n" % ", ".join(["1"] * 100)
    [diag] = _loader.load_text(text, file="f.yml", limits=_loader.Limits(max_values=50)).diagnostics
    assert diag.code == "yaml-syntax" and "--max-values" in diag.message


def test_depth_and_aliases_are_options():
    deep = "a: " + "[" * 10 + "]" * 10 + "\n"
    [diag] = _loader.load_text(deep, file="f.yml", limits=_loader.Limits(max_depth=5)).diagnostics
    assert "--max-depth" in diag.message
    aliases = "a: &a [1, 2]\nb: [%s]\n" % ", ".join(["*a"] * 20)
    [diag] = _loader.load_text(aliases, file="f.yml", limits=_loader.Limits(max_aliases=10)).diagnostics
    assert "--max-aliases" in diag.message


def test_values_stay_json_types():
    doc = _loader.load_text("a: 2001-12-14\nb: .nan\nc: yes\nd: 0x1F\n", file="f.yml")
    assert doc.data == {"a": "2001-12-14", "b": ".nan", "c": True, "d": 31}


def test_pure_python_loader_gives_the_same_positions(monkeypatch):
    import yaml
    monkeypatch.setattr(_loader, "_YamlLoader", yaml.SafeLoader)
    doc = _loader.load_text(SPEC, file="f.yml")
    assert doc.position(("hosts", "fw1", "rules", 0, "protocol")) == (13, 46)


def test_example_fleet_is_clean():
    here = os.path.dirname(os.path.abspath(__file__))
    report = validate_file(os.path.join(here, "..", "..", "..", "..", "examples", "fleet.yml"))
    assert report.diagnostics == [], [d.message for d in report.diagnostics]
