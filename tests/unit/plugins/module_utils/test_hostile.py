# -*- coding: utf-8 -*-
"""The hostile corpus through the command line: every case refused where the table says, bounded, fast.

The table is hostile/cases.json (see its "about"); the action plugins run the same cases in
tests/unit/plugins/action/test_hostile_actions.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import subprocess
import sys

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _cli, _schema
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_text
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import subprocess_env
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.hostile_corpus import (
    CASES, make, position, text_of)

NAMES = [case["name"] for case in CASES]
WRITTEN = [case for case in CASES if "lines" in case]
MAX_OUTPUT = 64 * 1024  # bytes of `validate --format json` output any case may produce
LIMIT_SECONDS = 2.0
LIMIT_KB = 200 * 1024


def test_the_table_is_well_formed():
    assert len(NAMES) == len(set(NAMES)) >= 100
    for case in CASES:
        assert case["exit"] in (1, 2) and case["why"], case["name"]
        if case["exit"] == 1:
            assert case["code"] in CODES, case["name"]
        assert ("lines" in case) + ("special" in case) + ("generate" in case) == 1, case["name"]


def test_every_new_code_has_a_hostile_case():
    codes = {case.get("code") for case in CASES}
    assert {"invisible-character", "yaml-number", "reserved-service", "shared-service", "reserved-rc-var",
            "unsafe-rc-value", "interface-keyword", "duplicate-key", "schema", "yaml-syntax"} <= codes


def _run(capsys, *argv):
    code = _cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", [c for c in CASES if "special" not in c], ids=lambda c: c["name"])
def test_command_line_refuses_the_case_where_the_table_says(case, capsys, tmp_path):
    path = make(case, tmp_path)
    code, out, err = _run(capsys, "validate", path, "--format", "json")
    assert code == case["exit"], out[:2000]
    assert "Traceback" not in err and len(out) < MAX_OUTPUT
    report = json.loads(out)
    assert report["valid"] is False
    found = [d for d in report["errors"] if d["code"] == case["code"]]
    assert found, [d["code"] for d in report["errors"]]
    if position(case):
        assert (found[0]["line"], found[0]["column"]) == position(case), found[0]
    for diag in report["errors"] + report["warnings"]:
        assert diag["line"] >= 1 and diag["column"] >= 1 and len(diag["message"]) < 1000, diag
    # the text form names the same place, compiler style
    code, out, _err = _run(capsys, "validate", path)
    if position(case) and "lines" in case:
        assert "%s:%d:%d: error %s: " % ((path,) + position(case) + (case["code"],)) in out


@pytest.mark.parametrize("case", [c for c in CASES if "special" in c], ids=lambda c: c["name"])
def test_special_files_exit_2_without_opening_them_for_reading(case, tmp_path):
    """A FIFO blocks a reader until a writer comes: run in a child with a timeout, so a hang fails."""
    path = make(case, tmp_path)
    for command in (["validate", path], ["render", path, "--host", "fw1"], ["plan", path]):
        child = subprocess.run(
            [sys.executable, "-c", "import sys; from ansible_collections.divert.fleet.plugins.module_utils._cli "
                                   "import main; sys.exit(main(sys.argv[1:]))"] + command,
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
        err = child.stderr.decode()
        assert child.returncode == 2, err
        assert "not a regular file" in err and path in err and "Traceback" not in err


@pytest.mark.parametrize("case", WRITTEN, ids=lambda c: c["name"])
def test_render_and_plan_refuse_the_case(case, capsys, tmp_path):
    path = make(case, tmp_path)
    for argv in (("render", path, "--host", "fw1"), ("plan", path)):
        code, out, err = _run(capsys, *argv)
        assert code == case["exit"] and out == "", argv
        assert "Traceback" not in err and len(err) < MAX_OUTPUT
        assert " %s: " % case["code"] in err


@pytest.mark.parametrize("case", WRITTEN, ids=lambda c: c["name"])
def test_both_validator_paths_give_the_same_report(case, monkeypatch):
    """jsonschema-rs confirms or refuses; jsonschema explains. Without jsonschema-rs the explaining
    library decides alone, and must decide the same."""
    pytest.importorskip("jsonschema_rs")
    text = text_of(case).encode("utf-8")
    compiled = validate_text(text, file="x.yml")
    monkeypatch.setitem(_schema._cache, "fast", None)
    pure = validate_text(text, file="x.yml")
    assert compiled.valid() is pure.valid() is False
    assert [d.as_dict() for d in compiled.diagnostics] == [d.as_dict() for d in pure.diagnostics]


def _measured(path):
    """(exit code, CPU seconds, peak KB, output bytes) of `divert-fleet validate path` in a child."""
    program = (
        "import resource, sys\n"
        "from ansible_collections.divert.fleet.plugins.module_utils._cli import main\n"
        "code = main(['validate', sys.argv[1], '--format', 'json'])\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "peak = usage.ru_maxrss\n"
        "try:\n"  # ru_maxrss also counts the parent's pages at fork time (Linux); VmHWM is this program's
        "    with open('/proc/self/status') as status:\n"
        "        peak = [int(l.split()[1]) for l in status if l.startswith('VmHWM:')][0]\n"
        "except (OSError, IndexError):\n"
        "    pass\n"
        "sys.stderr.write('\\nUSAGE %f %d\\n' % (usage.ru_utime + usage.ru_stime, peak))\n"
        "sys.exit(code)\n")
    child = subprocess.run([sys.executable, "-c", program, path], env=subprocess_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    seconds, peak = child.stderr.decode().rsplit("USAGE ", 1)[1].split()
    return child.returncode, float(seconds), int(peak), len(child.stdout)


@pytest.mark.parametrize("case", [c for c in CASES if c.get("worst")], ids=lambda c: c["name"])
def test_the_worst_cases_stay_under_2_s_and_200_mb(case, tmp_path):
    code, seconds, peak_kb, output = _measured(make(case, tmp_path))
    assert code == case["exit"]
    assert seconds < LIMIT_SECONDS, "%s: %.2f s of CPU" % (case["name"], seconds)
    assert peak_kb < LIMIT_KB, "%s: %d KB" % (case["name"], peak_kb)
    assert output < MAX_OUTPUT
