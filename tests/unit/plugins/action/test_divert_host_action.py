# -*- coding: utf-8 -*-
"""divert_host's action plugin: one module run when nothing waits; progress shown while a change waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ansible_collections.divert.fleet.plugins.action import divert_host as action_module
from ansible_collections.divert.fleet.tests.unit.plugins.action.action_helpers import make_action
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import subprocess_env

ARGS = {"backend": "pf", "rules": "", "consumers": [{"name": "probe", "ready_timeout": 10, "drain_timeout": 20}]}


def _action(monkeypatch, answers, job_lines):
    action = make_action(action_module.ActionModule, ARGS, "divert.fleet.divert_host")
    calls = {"modules": [], "commands": []}

    def execute_module(module_name, module_args, task_vars):
        calls["modules"].append((module_name, module_args))
        return answers.pop(0)

    def low_level(command):
        calls["commands"].append(command)
        return {"rc": 0, "stdout": "\n".join(job_lines.pop(0) if job_lines else []) + "\n"}
    monkeypatch.setattr(action, "_execute_module", execute_module)
    monkeypatch.setattr(action, "_low_level_execute_command", low_level)
    return action, calls


def test_a_change_that_does_not_wait_is_one_module_run(monkeypatch):
    action, calls = _action(monkeypatch, [{"changed": False, "consumers": []}], [])
    result = action.run(task_vars={"inventory_hostname": "fw1"})
    assert result["changed"] is False and calls["commands"] == []
    (name, args), = calls["modules"]
    assert name == "divert.fleet.divert_host" and args["job"].startswith("/var/run/divert_fleet.job.")


def test_a_waiting_change_is_followed_and_its_progress_shown(monkeypatch):
    shown = []
    monkeypatch.setattr(action_module.display, "display", shown.append)
    progress = [json.dumps({"progress": "waiting 0s: host fw1 port 8001: 5 socket(s) declared, 2 bound"})]
    done = progress + [json.dumps({"progress": "draining port(s) 8000: 1 pf state(s) left, 3 s of 20"}),
                       json.dumps({"result": {"changed": True, "live_ports": {"probe": 8001}}})]
    action, calls = _action(monkeypatch, [{"changed": False, "detached": True, "job": "/var/run/j"}],
                            [progress, done])
    result = action.follow("/var/run/j", {"inventory_hostname": "fw1", "ansible_python_interpreter": "/py"}, 60,
                           sleep=lambda s: None)
    assert result == {"changed": True, "live_ports": {"probe": 8001}}
    assert shown == ["fw1: waiting 0s: host fw1 port 8001: 5 socket(s) declared, 2 bound",
                     "fw1: draining port(s) 8000: 1 pf state(s) left, 3 s of 20"]
    assert all(command.startswith("/py -c ") for command in calls["commands"])
    assert "os.unlink" in calls["commands"][-1]  # the job file is removed once read


def test_a_job_that_never_ends_fails_after_its_bound(monkeypatch):
    action, _calls = _action(monkeypatch, [], [])
    clock = iter(range(0, 10000, 10))
    result = action.follow("/var/run/j", {"inventory_hostname": "fw1"}, 30, sleep=lambda s: None,
                           clock=lambda: next(clock))
    assert result["failed"] and "did not finish within 30 s" in result["msg"]
    assert action.bound(ARGS) == (10 + 20) * 2 + action_module.MARGIN_SECONDS


def test_progress_hands_the_change_to_a_child_that_writes_the_result(tmp_path):
    """The parent returns at once; the child goes on, writes its progress and its result, and ends."""
    job = str(tmp_path / "job.jsonl")
    script = (
        "import sys, time\n"
        "from ansible_collections.divert.fleet.plugins.module_utils._host_os import Detached, Progress\n"
        "progress = Progress(sys.argv[1])\n"
        "try:\n"
        "    progress('first wait')\n"
        "except Detached as exc:\n"
        "    print('detached ' + exc.job)\n"
        "    sys.exit(0)\n"
        "time.sleep(0.2)\n"
        "progress('second wait')\n"
        "progress.finish({'changed': True, 'messages': progress.messages})\n")
    proc = subprocess.run([sys.executable, "-c", script, job], env=subprocess_env(), stdout=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "detached " + job
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in open(job).read().splitlines()]
        if records and "result" in records[-1]:
            break
        time.sleep(0.05)
    assert [r.get("progress") for r in records[:-1]] == ["first wait", "second wait"]
    assert records[-1]["result"] == {"changed": True, "messages": ["first wait", "second wait"]}
    assert oct(os.stat(job).st_mode & 0o777) == "0o600"
