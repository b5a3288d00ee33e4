# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the controller-side plugins get a fleet spec. Private to the divert.fleet collection.

Shared by the `divert.fleet.validate` and `divert.fleet.render` action plugins:
their common options (`spec` or `data`, `strict`), where a relative `spec` path
is looked for, a per-process cache of validation reports, and the failure
message for an invalid spec. Validation itself is `module_utils._validate`;
nothing here judges a spec.
"""

from __future__ import annotations

import os
import re

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.parsing.mod_args import ModuleArgsParser

from ansible_collections.divert.fleet.plugins.module_utils import _formats, _grammar
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import pointer
from ansible_collections.divert.fleet.plugins.module_utils._loader import SpecFileError
from ansible_collections.divert.fleet.plugins.module_utils._validate import Report, validate_data, validate_file

# The options both action plugins take; documented once in the divert.fleet._fleet_spec doc fragment.
SPEC_ARGUMENT_SPEC = {
    "spec": {"type": "path"},
    "data": {"type": "dict"},
    "strict": {"type": "bool", "default": False},
}
SPEC_MUTUALLY_EXCLUSIVE = [("spec", "data")]
SPEC_REQUIRED_ONE_OF = [("spec", "data")]

# How many diagnostics a failure message quotes; the full lists are in the result.
MESSAGE_DIAGNOSTICS = 10

# Reports by (path as given, real path, mtime in ns, size). Ansible runs each task of each host in a
# forked worker process, so this saves work within one worker: a task that loops over the hosts of
# a spec (playbooks/render.yml) validates the file once, not once per item.
_REPORTS = {}
_REPORTS_KEPT = 8


def find_spec_file(action, spec):
    """The file a `spec` option names.

    An absolute path is taken as it is. A relative one is looked for where Ansible looks for a
    `src` file (the role's `files/`, the role, the playbook directory's `files/`, the playbook
    directory), then in the controller's current working directory, so that
    `ansible-playbook divert.fleet.validate -e fleet_spec=examples/fleet.yml` finds the file
    beside the user and not beside the collection's playbook.
    """
    if os.path.isabs(spec):
        return spec
    try:
        return action._find_needle("files", spec)
    except AnsibleError:
        if os.path.exists(spec):
            return spec
    raise AnsibleActionFail(
        "fleet spec %s not found: looked in the role's and the playbook's files/ directories, "
        "beside the playbook, and in the current directory %s" % (spec, os.getcwd()))


def report_for_file(path):
    """The validation report of a spec file, from the cache when the file is unchanged."""
    try:
        stat = os.stat(path)
        key = (path, os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None  # validate_file reports why the file cannot be read
    report = _REPORTS.get(key) if key else None
    if report is None:
        try:
            report = validate_file(path)
        except SpecFileError as exc:
            raise AnsibleActionFail(str(exc))
        if key:
            if len(_REPORTS) >= _REPORTS_KEPT:
                _REPORTS.clear()
            _REPORTS[key] = report
    return report


def load_report(action, args):
    """(report, spec path or None) for validated task args holding `spec` or `data`.

    `data: null` is validated as the null document it is (a schema error), not taken for a missing
    option."""
    if args.get("data") is not None or args.get("spec") is None:
        return validate_data(args.get("data")), None
    path = find_spec_file(action, args["spec"])
    return report_for_file(path), path


# Jinja's delimiters: a string holding one is a template to Ansible.
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")
# `{{ name }}` or `{{ name.key }}`: the only `data` expressions traced back to the variable they read.
_BARE_VARIABLE = re.compile(r"\A\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}\Z")
_TRACED_NODES = 100000  # a bound on the walk through the variable's value


def _variable(task_vars, name):
    value = task_vars
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def templated_strings(action, task_vars):
    """(JSON Pointer, text) of every string of a `data` spec that Ansible templated before the task ran.

    Ansible templates a task's arguments, and the variables they name, before the action sees them: a
    `{{ lookup('pipe', ...) }}` in a description of a spec given as extra vars runs on the controller,
    and what reaches the validator is its output. The task's raw arguments, and the variables in
    `task_vars` (kept untemplated), still hold the templates: `data` given inline, or as `{{ name }}`,
    is traced back; a longer expression cannot be, and gives nothing."""
    try:
        _name, raw_args, _delegate = ModuleArgsParser(task_ds=action._task._ds).parse(skip_action_validation=True)
    except Exception:  # a task built by hand (or a future Ansible): nothing to trace
        return []
    raw = raw_args.get("data") if isinstance(raw_args, dict) else None
    for _hop in range(5):  # a variable naming a variable, and so on
        if not isinstance(raw, str):
            break
        match = _BARE_VARIABLE.match(raw)
        if not match:
            return []
        raw = _variable(task_vars or {}, match.group(1))
    found = []
    budget = [_TRACED_NODES]

    def walk(value, path):
        budget[0] -= 1
        if budget[0] < 0:
            return
        if isinstance(value, str):
            if _TEMPLATE.search(value):
                found.append((pointer(path), str(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, path)
                walk(item, path + (str(key),))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, path + (index,))
    if isinstance(raw, (dict, list)):
        walk(raw, ())
    return found


def warn_if_templated(action, args, task_vars, result):
    """Add to the result's `warnings` when a `data` spec held strings that Ansible templated."""
    if args.get("data") is None:
        return
    found = templated_strings(action, task_vars)
    if not found:
        return
    where, text = found[0]
    result.setdefault("warnings", []).append(
        "fleet spec data: %d string%s of the spec held Jinja templates (the first at %s: %s), which Ansible "
        "evaluated on the controller before the task saw the spec (unless marked !unsafe); what was validated is "
        "their output. Pass the spec as a file (spec: FILE): a file is read as data and never templated." % (
            len(found), "" if len(found) == 1 else "s", where or "/", _grammar.quote(text)))


def diagnostic_lines(file, diagnostics):
    """Each diagnostic as `file:line:col: severity code: message`, formatted as the command line does."""
    if not diagnostics:
        return []
    # _formats.text ends with a summary line; the lines before it are the diagnostics.
    return _formats.text(Report(file, diagnostics, None)).splitlines()[:-1]


def failing(report, strict):
    """The diagnostics that make the report fail: its errors, and its warnings when strict."""
    return report.errors + (report.warnings if strict else [])


def failure_message(report, strict):
    """Why a spec is refused: a summary, then the first diagnostics that make it fail."""
    failures = failing(report, strict)
    lines = diagnostic_lines(report.file, failures)
    shown = lines[:MESSAGE_DIAGNOSTICS]
    errors, warnings = len(report.errors), len(report.warnings)
    head = "fleet spec %s is invalid: %d error%s, %d warning%s%s" % (
        report.file, errors, "" if errors == 1 else "s", warnings, "" if warnings == 1 else "s",
        " (strict: warnings count as errors)" if strict and warnings else "")
    if len(lines) > len(shown):
        shown.append("... and %d more (see `errors` and `spec_warnings` in the result)" % (len(lines) - len(shown)))
    return "\n".join([head] + shown)


def diagnostics_result(report):
    """The result keys that carry a report's diagnostics as data.

    `errors` and `spec_warnings` are lists of diagnostic dicts. Ansible reserves a result's
    `warnings` key (it shows each item as a [WARNING] and keeps it only as text), so the spec's
    warnings go there as `file:line:col: warning code: message` lines.
    """
    result = {
        "errors": [d.as_dict() for d in report.errors],
        "spec_warnings": [d.as_dict() for d in report.warnings],
    }
    if report.warnings:
        result["warnings"] = diagnostic_lines(report.file, report.warnings)
    return result
