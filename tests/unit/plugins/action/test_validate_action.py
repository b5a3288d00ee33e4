# -*- coding: utf-8 -*-
"""The divert.fleet.validate action plugin: a thin layer over module_utils._validate."""

from __future__ import annotations

import os

import pytest

from ansible_collections.divert.fleet.plugins.action.validate import ActionModule
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_data, validate_file
from ansible_collections.divert.fleet.plugins.plugin_utils import _fleet_spec
from ansible_collections.divert.fleet.tests.unit.plugins.action.action_helpers import (
    BROKEN, FLEET, make_action, spec, write_spec,
)

NAME = "divert.fleet.validate"


def validate(args, **kwargs):
    return make_action(ActionModule, args, NAME, **kwargs).run(task_vars={})


def test_plugin_runs_on_the_controller():
    assert ActionModule._requires_connection is False
    assert ActionModule.TRANSFERS_FILES is False


def test_valid_spec():
    result = validate({"spec": FLEET})
    report = validate_file(FLEET)
    assert not result.get("failed")
    assert result["changed"] is False
    assert result["valid"] is True
    assert result["errors"] == [] and result["spec_warnings"] == []
    assert "warnings" not in result
    assert result["summary"] == report.summary() == {"hosts": 4, "consumers": 3, "rules": 9}
    assert result["hosts"] == ["fw-edge-01", "fw-edge-02", "fw-branch-01", "fw-lab-01"]
    assert result["spec"] == FLEET


def test_invalid_spec_fails_with_every_diagnostic():
    result = validate({"spec": BROKEN})
    report = validate_file(BROKEN)
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["valid"] is False
    assert result["errors"] == [d.as_dict() for d in report.errors]
    assert result["spec_warnings"] == [d.as_dict() for d in report.warnings]
    assert {"schema", "unknown-profile", "port-unbound", "duplicate-rule"} <= {d["code"] for d in result["errors"]}
    first = result["errors"][0]
    assert set(first) == {"code", "severity", "message", "path", "file", "line", "column"}
    assert first["file"] == BROKEN and first["line"] >= 1 and first["column"] >= 1
    # Ansible shows `warnings` items as [WARNING]s and keeps them as text only.
    assert len(result["warnings"]) == len(report.warnings)
    assert all(isinstance(line, str) and ": warning " in line for line in result["warnings"])


def test_failure_message_quotes_the_first_errors_as_a_compiler_does():
    result = validate({"spec": BROKEN})
    report = validate_file(BROKEN)
    errors = report.errors
    assert len(errors) > _fleet_spec.MESSAGE_DIAGNOSTICS  # the example has more than the message quotes
    lines = result["msg"].splitlines()
    assert lines[0] == "fleet spec %s is invalid: %d errors, %d warnings" % (BROKEN, len(errors), len(report.warnings))
    quoted = lines[1:1 + _fleet_spec.MESSAGE_DIAGNOSTICS]
    assert quoted == ["%s:%d:%d: error %s: %s" % (BROKEN, d.line, d.column, d.code, d.message)
                      for d in errors[:_fleet_spec.MESSAGE_DIAGNOSTICS]]
    assert lines[-1] == "... and %d more (see `errors` and `spec_warnings` in the result)" % (
        len(errors) - _fleet_spec.MESSAGE_DIAGNOSTICS)


def test_still_reports_hosts_of_an_invalid_spec():
    assert validate({"spec": BROKEN})["hosts"] == ["fw-edge-01", "fw-edge-02", "fw-lab-01"]


def test_data_instead_of_a_path():
    result = validate({"data": spec()})
    assert not result.get("failed")
    assert result["valid"] is True
    assert result["hosts"] == ["fw1", "fw2"]
    assert result["spec"] is None


def test_invalid_data_has_pointers_but_no_positions():
    result = validate({"data": spec(bad_port=70000)})
    assert result["failed"] is True
    (error,) = result["errors"]
    assert error["code"] == "schema"
    assert (error["path"], error["file"], error["line"], error["column"]) == ("/consumers/ids/port", "<data>", None, None)
    assert "<data>:/consumers/ids/port: error schema: 70000 is out of range" in result["msg"]


def test_warnings_pass_unless_strict():
    data = spec(inet6=True)
    lenient = validate({"data": data})
    assert not lenient.get("failed")
    assert lenient["valid"] is True
    assert [w["code"] for w in lenient["spec_warnings"]] == ["pf-inet6"]
    assert lenient["warnings"][0].startswith("<data>:/profiles/edge/rules/0/family: warning pf-inet6: ")

    strict = validate({"data": data, "strict": True})
    assert strict["failed"] is True
    assert strict["valid"] is False
    assert strict["errors"] == []
    assert "(strict: warnings count as errors)" in strict["msg"]
    assert "warning pf-inet6" in strict["msg"]


def test_strict_is_a_boolean_option():
    result = validate({"data": spec(inet6=True), "strict": "yes"})
    assert result["failed"] is True


@pytest.mark.parametrize("args, message", [
    ({}, "one of the following is required: spec, data"),
    ({"spec": FLEET, "data": {"version": 1}}, "parameters are mutually exclusive: spec|data"),
    ({"spec": FLEET, "hosts": ["x"]}, "Unsupported parameters"),
    ({"data": "version: 1"}, "dictionary requested"),
])
def test_bad_arguments(args, message):
    result = validate(args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "valid" not in result


def test_missing_file(tmp_path):
    result = validate({"spec": str(tmp_path / "nope.yml")})
    assert result["failed"] is True
    assert "nope.yml" in result["msg"] and "cannot read the fleet spec" in result["msg"]


def test_relative_file_not_found_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = validate({"spec": "nope.yml"}, search_path=[str(tmp_path / "play")], basedir=tmp_path / "play")
    assert result["failed"] is True
    assert result["msg"].startswith("fleet spec nope.yml not found")


def test_unreadable_file_is_a_failure_not_a_traceback(tmp_path):
    result = validate({"spec": str(tmp_path)})  # a directory
    assert result["failed"] is True
    assert "cannot read the fleet spec" in result["msg"]


def test_relative_path_is_looked_for_beside_the_playbook_first(tmp_path, monkeypatch):
    play = tmp_path / "play"
    (play / "files").mkdir(parents=True)
    found = write_spec(play / "files" / "fleet.yml", spec())
    write_spec(tmp_path / "fleet.yml", spec(bad_port=0))  # in the current directory: not used
    monkeypatch.chdir(tmp_path)
    result = validate({"spec": "fleet.yml"}, search_path=[str(play)], basedir=play)
    assert result["valid"] is True
    assert os.path.realpath(result["spec"]) == os.path.realpath(found)


def test_relative_path_falls_back_to_the_current_directory(tmp_path, monkeypatch):
    play = tmp_path / "play"
    play.mkdir()
    (tmp_path / "specs").mkdir()
    write_spec(tmp_path / "specs" / "fleet.yml", spec(bad_port=0))
    monkeypatch.chdir(tmp_path)
    result = validate({"spec": "specs/fleet.yml"}, search_path=[str(play)], basedir=play)
    assert result["failed"] is True
    assert result["spec"] == "specs/fleet.yml"
    assert result["errors"][0]["file"] == "specs/fleet.yml"  # as the user gave it


def test_a_file_is_validated_once_until_it_changes(tmp_path, validations):
    path = write_spec(tmp_path / "fleet.yml", spec())
    results = [validate({"spec": path}) for _run in range(3)]
    assert all(result["valid"] for result in results)
    assert validations == [path]

    write_spec(tmp_path / "fleet.yml", spec(bad_port=70000))  # another size, another mtime
    os.utime(path, ns=(1, 1))
    assert validate({"spec": path})["valid"] is False
    assert validations == [path, path]


def test_same_answer_as_the_library():
    for data in (spec(), spec(inet6=True), spec(bad_port=0)):
        report = validate_data(data)
        result = validate({"data": data})
        assert result["valid"] == report.valid()
        assert result["errors"] == [d.as_dict() for d in report.errors]
        assert result["spec_warnings"] == [d.as_dict() for d in report.warnings]
        assert result["summary"] == report.summary()
