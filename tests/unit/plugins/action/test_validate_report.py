# -*- coding: utf-8 -*-
"""divert.fleet.validate's report file (format, dest): byte for byte what `divert-fleet validate` prints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.divert.fleet.plugins.action.validate import ActionModule
from ansible_collections.divert.fleet.plugins.module_utils import _formats
from ansible_collections.divert.fleet.tests.unit.plugins.action.action_helpers import (
    BROKEN, FLEET, ROOT, make_action, spec, write_spec,
)
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import subprocess_env

NAME = "divert.fleet.validate"
LAUNCHER = os.path.join(ROOT, "bin", "divert-fleet")


def validate(args, check_mode=False):
    action = make_action(ActionModule, args, NAME)
    action._task.check_mode = check_mode
    return action.run(task_vars={})


def command_output(*argv):
    """What the divert-fleet command prints on stdout, as bytes, and its exit code."""
    run = subprocess.run([sys.executable, LAUNCHER, "validate"] + list(argv), env=subprocess_env(),
                         capture_output=True, check=False)
    return run.stdout, run.returncode


def test_every_format_is_one_the_command_has():
    assert sorted(_formats.FORMATS) == ["json", "junit", "sarif", "text"]


@pytest.mark.parametrize("report_format", sorted(_formats.FORMATS))
@pytest.mark.parametrize("path, strict", [(FLEET, False), (BROKEN, False), (BROKEN, True)])
def test_report_file_is_the_commands_output_byte_for_byte(tmp_path, report_format, path, strict):
    dest = tmp_path / ("report." + report_format)
    result = validate({"spec": path, "strict": strict, "format": report_format, "dest": str(dest)})
    argv = [path, "--format", report_format] + (["--strict"] if strict else [])
    expected, code = command_output(*argv)
    assert expected  # the command printed a report
    assert dest.read_bytes() == expected
    assert result["valid"] is (code == 0)
    assert bool(result.get("failed")) is (code != 0)
    assert result["changed"] is True
    assert (result["dest"], result["format"]) == (str(dest), report_format)


def test_an_invalid_spec_fails_after_the_report_is_written(tmp_path):
    dest = tmp_path / "fleet.sarif"
    result = validate({"spec": BROKEN, "format": "sarif", "dest": str(dest)})
    assert result["failed"] is True
    assert result["msg"].startswith("fleet spec %s is invalid" % BROKEN)
    assert b'"ruleId": "unknown-profile"' in dest.read_bytes()


def test_text_is_the_default_format(tmp_path):
    dest = tmp_path / "report.txt"
    result = validate({"spec": FLEET, "dest": str(dest)})
    assert result["format"] == "text"
    assert dest.read_bytes() == command_output(FLEET)[0]


def test_an_unchanged_report_is_left_alone(tmp_path):
    dest = tmp_path / "report.json"
    args = {"spec": FLEET, "format": "json", "dest": str(dest)}
    assert validate(args)["changed"] is True
    os.utime(str(dest), ns=(1, 1))
    again = validate(args)
    assert again["changed"] is False
    assert os.stat(str(dest)).st_mtime_ns == 1


def test_check_mode_writes_nothing_and_says_it_would(tmp_path):
    dest = tmp_path / "report.xml"
    result = validate({"spec": FLEET, "format": "junit", "dest": str(dest)}, check_mode=True)
    assert result["changed"] is True
    assert not dest.exists()


def test_no_report_file_without_dest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = validate({"spec": FLEET})
    assert result["changed"] is False
    assert "dest" not in result and "format" not in result
    assert os.listdir(str(tmp_path)) == []


def test_format_without_dest_is_an_error():
    result = validate({"spec": FLEET, "format": "sarif"})
    assert result["failed"] is True
    assert result["msg"] == "format names the format of the report written to dest; give dest too"


def test_an_unknown_format_is_refused(tmp_path):
    result = validate({"spec": FLEET, "format": "html", "dest": str(tmp_path / "r")})
    assert result["failed"] is True
    assert "format" in result["msg"] and "json, junit, sarif, text" in result["msg"]
    assert not (tmp_path / "r").exists()


def test_a_report_that_cannot_be_written_fails_with_the_reason(tmp_path):
    dest = tmp_path / "missing-directory" / "fleet.sarif"
    result = validate({"spec": FLEET, "format": "sarif", "dest": str(dest)})
    assert result["failed"] is True
    assert result["msg"].startswith("cannot write the validation report to %s: " % dest)
    assert os.listdir(str(tmp_path)) == []


def test_a_relative_dest_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = validate({"spec": FLEET, "format": "json", "dest": "fleet.json"})
    assert result["dest"] == "fleet.json"
    assert (tmp_path / "fleet.json").read_bytes() == command_output(FLEET, "--format", "json")[0]
    assert sorted(os.listdir(str(tmp_path))) == ["fleet.json"]  # no temporary file left behind


def test_data_reports_name_data_as_their_file(tmp_path):
    dest = tmp_path / "report.txt"
    data = spec(bad_port=0)
    result = validate({"data": data, "dest": str(dest)})
    assert result["failed"] is True
    assert dest.read_text().startswith("<data>:/consumers/ids/port: error schema: ")
    assert dest.read_text().splitlines()[-1].startswith("<data>: invalid: 1 error")
    write_spec(tmp_path / "spec.yml", data)  # the same spec as a file: the same lines, with positions
    assert command_output(str(tmp_path / "spec.yml"))[0].decode().count(" error schema: ") == 1
