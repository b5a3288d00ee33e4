# -*- coding: utf-8 -*-
"""The hostile corpus through the validate and render actions, as a file and as data; `data: null`;
specs whose strings Ansible templated before the task saw them."""

from __future__ import annotations

import threading

import pytest
import yaml

from ansible_collections.divert.fleet.plugins.action.render import ActionModule as RenderAction
from ansible_collections.divert.fleet.plugins.action.validate import ActionModule as ValidateAction
from ansible_collections.divert.fleet.tests.unit.plugins.action.action_helpers import make_action, spec
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.hostile_corpus import (
    CASES, make, position, text_of)

VALIDATE = "divert.fleet.validate"
RENDER = "divert.fleet.render"
AS_DATA = [c for c in CASES if "lines" in c and c.get("data", True)]


def _in_time(function, seconds=30):
    """Run function in a thread: a FIFO opened for reading would block it, and fail the test, not hang it."""
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", function()))
    worker.daemon = True
    worker.start()
    worker.join(seconds)
    assert "result" in box, "the action did not return within %d s" % seconds
    return box["result"]


def validate(args, task_vars=None, ds=None):
    action = make_action(ValidateAction, args, VALIDATE)
    action._task._ds = ds if ds is not None else {VALIDATE: dict(args)}
    return _in_time(lambda: action.run(task_vars=task_vars or {}))


def render(args):
    action = make_action(RenderAction, args, RENDER)
    action._task._ds = {RENDER: dict(args)}
    return _in_time(lambda: action.run(task_vars={}))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_file_cases_fail_the_validate_action_at_their_place(case, tmp_path):
    path = make(case, tmp_path)
    result = validate({"spec": path})
    assert result["failed"] is True and not result.get("changed")
    if case["exit"] == 2:
        assert "not a regular file" in result["msg"] and "valid" not in result
        return
    assert result["valid"] is False
    found = [d for d in result["errors"] if d["code"] == case["code"]]
    assert found, [d["code"] for d in result["errors"]]
    if position(case):
        assert (found[0]["line"], found[0]["column"]) == position(case)
    assert len(result["msg"]) < 16 * 1024 and len(result["errors"]) <= 51 * 20


@pytest.mark.parametrize("case", [c for c in CASES if "special" in c], ids=lambda c: c["name"])
def test_special_files_fail_the_render_action(case, tmp_path):
    result = render({"spec": make(case, tmp_path), "host": "fw1"})
    assert result["failed"] is True and "not a regular file" in result["msg"] and "text" not in result


@pytest.mark.parametrize("case", AS_DATA, ids=lambda c: c["name"])
def test_data_cases_fail_both_actions(case):
    """What a case holds as data (after YAML parsed it, as Ansible would) is refused the same way."""
    data = yaml.safe_load(text_of(case))
    result = validate({"data": data})
    assert result["failed"] is True and result["valid"] is False
    found = [d for d in result["errors"] if d["code"] == case["code"]]
    assert found, [d["code"] for d in result["errors"]]
    assert all(d["line"] is None and d["file"] == "<data>" for d in result["errors"])
    rendered = render({"data": data, "host": "fw1"})
    assert rendered["failed"] is True and "text" not in rendered
    assert case["code"] in {d["code"] for d in rendered["errors"]}


@pytest.mark.parametrize("run", [validate, lambda args: render(dict(args, host="fw1"))])
def test_data_null_is_a_null_document(run):
    result = run({"data": None})
    assert result["failed"] is True
    (error,) = result["errors"]
    assert (error["code"], error["path"]) == ("schema", "")
    assert "null" in error["message"] and "version: 1, consumers and hosts" in error["message"]


def _templated(spec_data):
    """A spec as extra vars hold it before Ansible templates it, and as the action receives it."""
    received = spec()
    received["consumers"]["ids"]["description"] = "uid=0(root)"  # what the lookup printed
    return spec_data, received


def test_a_templated_data_spec_is_warned_about():
    raw = spec()
    raw["consumers"]["ids"]["description"] = "{{ lookup('pipe', 'id') }}"
    raw["consumers"]["ids"]["rc_vars"] = {"suricata_flags": "{% if true %}-v{% endif %}"}
    _raw, received = _templated(raw)
    received["consumers"]["ids"]["rc_vars"] = {"suricata_flags": "-v"}
    result = validate({"data": received}, task_vars={"fleet_spec_data": raw},
                      ds={VALIDATE: {"data": "{{ fleet_spec_data }}"}})
    assert result["valid"] is True  # the output of the templates is a valid spec ...
    (warning,) = [w for w in result["warnings"] if w.startswith("fleet spec data:")]  # ... but it is not the spec
    assert "2 strings" in warning and "/consumers/ids/description" in warning
    assert "lookup('pipe', 'id')" in warning and "spec: FILE" in warning


def test_a_spec_given_inline_is_traced_too():
    raw = spec()
    raw["hosts"]["fw1"]["profile"] = "{{ 'edge' }}"
    result = validate({"data": spec()}, ds={"action": VALIDATE, "args": {"data": raw}})
    assert any("/hosts/fw1/profile" in w for w in result["warnings"])


@pytest.mark.parametrize("expression", ["{{ fleet_spec_data | combine({}) }}", "{{ lookup('file', 'x') | from_yaml }}"])
def test_an_expression_cannot_be_traced_and_is_not_guessed_at(expression):
    raw = spec()
    raw["consumers"]["ids"]["description"] = "{{ 1 }}"
    result = validate({"data": spec()}, task_vars={"fleet_spec_data": raw}, ds={VALIDATE: {"data": expression}})
    assert not [w for w in result.get("warnings", []) if w.startswith("fleet spec data:")]


def test_a_plain_data_spec_has_no_warning():
    result = validate({"data": spec()}, task_vars={"fleet_spec_data": spec()},
                      ds={VALIDATE: {"data": "{{ fleet_spec_data }}"}})
    assert result["valid"] is True and "warnings" not in result


def test_a_file_spec_is_never_traced(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(spec()).replace("service: suricata", "service: suricata  # {{ x }}"))
    result = validate({"spec": str(path)}, ds={VALIDATE: {"spec": str(path)}})
    assert result["valid"] is True and "warnings" not in result
