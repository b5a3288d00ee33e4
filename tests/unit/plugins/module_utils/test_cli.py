# -*- coding: utf-8 -*-
"""The divert-fleet command: output formats, exit codes, render and plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _cli, _schema
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import EXAMPLES, subprocess_env

FLEET = os.path.join(EXAMPLES, "fleet.yml")
BROKEN = os.path.join(EXAMPLES, "broken.yml")


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        sys.exit(_cli.main(list(argv)))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_valid_spec_text(capsys):
    code, out, _err = run(capsys, "validate", FLEET)
    assert code == 0
    assert out.strip().endswith("valid: 0 errors, 0 warnings (4 hosts, 3 consumers, 9 rules)")


def test_invalid_spec_text_lines_are_compiler_style(capsys):
    code, out, _err = run(capsys, "validate", BROKEN)
    assert code == 1
    lines = out.splitlines()
    for line in lines[:-1]:
        path, line_no, column, rest = line.split(":", 3)
        assert path == BROKEN and int(line_no) > 0 and int(column) > 0
        severity, code_name = rest.split(":")[0].split()
        assert severity in ("error", "warning") and code_name in CODES
    positions = [tuple(int(x) for x in line.split(":")[1:3]) for line in lines[:-1]]
    assert positions == sorted(positions)
    assert "invalid" in lines[-1]


def test_json_contract(capsys):
    code, out, _err = run(capsys, "validate", BROKEN, "--format", "json")
    document = json.loads(out)
    assert code == 1 and document["valid"] is False
    assert set(document) == {"valid", "errors", "warnings", "summary"}
    assert set(document["summary"]) == {"hosts", "consumers", "rules"}
    for diag in document["errors"] + document["warnings"]:
        assert set(diag) == {"code", "severity", "message", "path", "file", "line", "column"}
    assert {d["code"] for d in document["errors"]} >= {"schema", "unknown-consumer", "port-mismatch"}


def test_strict_turns_warnings_into_failure(capsys, tmp_path):
    spec = tmp_path / "warn.yml"
    with open(FLEET) as handle:
        text = handle.read()
    spec.write_text(text.replace("port: 8400", "port: 8100", 1))  # port-reserved on the OPNsense hosts
    assert run(capsys, "validate", str(spec))[0] == 0
    code, out, _err = run(capsys, "validate", str(spec), "--strict", "--format", "json")
    assert code == 1 and json.loads(out)["valid"] is False


def test_sarif_has_one_rule_per_code_and_located_results(capsys):
    code, out, _err = run(capsys, "validate", BROKEN, "--format", "sarif")
    document = json.loads(out)
    assert code == 1 and document["version"] == "2.1.0"
    run0 = document["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(CODES)
    for result in run0["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert result["level"] in ("error", "warning")


def test_junit_is_xml_with_a_case_per_code(capsys):
    code, out, _err = run(capsys, "validate", BROKEN, "--format", "junit")
    root = ET.fromstring(out)
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert code == 1 and len(cases) == len(CODES)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert "port-mismatch" in failed and "label-length" not in failed
    assert int(suite.get("failures")) == len(failed)


def test_unreadable_file_exits_2(capsys, tmp_path):
    code, _out, err = run(capsys, "validate", str(tmp_path / "missing.yml"))
    assert code == 2 and "missing.yml" in err and "Traceback" not in err


def test_usage_error_exits_2(capsys):
    assert run(capsys, "validate")[0] == 2
    assert run(capsys, "frobnicate", FLEET)[0] == 2
    assert run(capsys, "render", FLEET)[0] == 2  # --host or --out-dir is required


def test_render_host_and_unknown_host(capsys):
    code, out, _err = run(capsys, "render", FLEET, "--host", "fw-lab-01")
    assert code == 0 and "add 10000 set 5 divert 8010 tcp from 10.20.0.0/16" in out
    code, _out, err = run(capsys, "render", FLEET, "--host", "fw-nope")
    assert code == 2 and "fw-edge-01" in err


def test_render_refuses_invalid_spec(capsys):
    code, out, err = run(capsys, "render", BROKEN, "--host", "fw-edge-02")
    assert code == 1 and out == "" and "port-mismatch" in err


def test_render_out_dir_writes_every_host(capsys, tmp_path):
    code, out, _err = run(capsys, "render", FLEET, "--out-dir", str(tmp_path / "rules"))
    assert code == 0
    assert sorted(os.listdir(str(tmp_path / "rules"))) == [
        "fw-branch-01.pf.conf", "fw-edge-01.pf.conf", "fw-edge-02.pf.conf", "fw-lab-01.ipfw.rules"]


def test_plan_text_and_json(capsys):
    code, out, _err = run(capsys, "plan", FLEET, "--host", "fw-edge-01")
    assert code == 0 and "wait until the kernel shows 15 sockets bound on port 8000" in out
    code, out, _err = run(capsys, "plan", FLEET, "--format", "json")
    plans = json.loads(out)["hosts"]
    assert [p["host"] for p in plans] == ["fw-edge-01", "fw-edge-02", "fw-branch-01", "fw-lab-01"]


def test_schema_is_a_valid_2020_12_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema.schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_property_has_a_description():
    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub or "$ref" in sub and "description" in _schema._resolve(sub), where + name
            for key, sub in node.items():
                walk(sub, where + "/" + key)
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, "%s/%d" % (where, index))
    walk(_schema.schema(), "")


def test_command_line_does_not_import_ansible():
    code = ("import sys; from ansible_collections.divert.fleet.plugins.module_utils import _cli;"
            "_cli.main(['validate', sys.argv[1]]);"
            "print(sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')))")
    out = subprocess.check_output([sys.executable, "-c", code, FLEET], env=subprocess_env()).decode()
    assert out.strip().splitlines()[-1] == "[]"


def test_every_read_limit_is_an_option_named_when_exceeded(capsys):
    code, out, _err = run(capsys, "validate", FLEET, "--max-values", "20", "--format", "json")
    assert code == 1 and "--max-values" in json.loads(out)["errors"][0]["message"]
    code, _out, err = run(capsys, "render", FLEET, "--host", "fw-edge-01", "--max-mib", "0.001")
    assert code == 2 and "(--max-mib)" in err
    code, _out, err = run(capsys, "plan", FLEET, "--max-depth", "0")
    assert code == 2 and "--max-depth must be at least 1" in err
    code, out, _err = run(capsys, "validate", FLEET, "--max-mib", "1", "--max-values", "5000", "--max-yaml-values", "10",
                          "--max-depth", "10", "--max-aliases", "10")
    assert code == 0, out
