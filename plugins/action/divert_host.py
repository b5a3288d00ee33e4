# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""divert.fleet.divert_host: runs the module, and shows what it waits for while it waits (docs: plugins/modules/divert_host.py).

A change that waits for nothing is one module run, as without this plugin. A change that has to
wait (a new group binding, an old one draining) is handed by the module to a child process on the
host; this plugin then reads the child's job file every few seconds with one small command (no
module run), shows each line of progress, and returns the child's result as the task's.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

JOB_DIR = "/var/run"
POLL_SECONDS = 2.0
# The longest a change may take: every group's ready and drain timeouts, and this margin.
MARGIN_SECONDS = 120
DEFAULT_TIMEOUTS = 60 + 300


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = dict(self._task.args)
        job = "%s/divert_fleet.job.%s.jsonl" % (JOB_DIR, uuid.uuid4().hex)
        args["job"] = job
        answer = self._execute_module(module_name="divert.fleet.divert_host", module_args=args, task_vars=task_vars)
        if not answer.get("detached"):
            result.update(answer)
            return result
        result.update(self.follow(answer["job"], task_vars, self.bound(args)))
        return result

    @staticmethod
    def bound(args):
        """Seconds after which a job that has not finished is given up on."""
        total = 0
        for consumer in args.get("consumers") or []:
            if isinstance(consumer, dict):
                total += int(consumer.get("ready_timeout") or 60) + int(consumer.get("drain_timeout") or 300)
        return (total or DEFAULT_TIMEOUTS) * 2 + MARGIN_SECONDS

    def on_host(self, task_vars, code, job):
        """Run a line of Python on the host with the interpreter Ansible uses there (it sees the
        host's own files, also where the connection's shell would not), `job` as its argument."""
        python = task_vars.get("ansible_python_interpreter") or \
            (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python") or "/usr/bin/env python3"
        return self._low_level_execute_command("%s -c %s %s" % (python, shlex.quote(code), shlex.quote(job)))

    def read_job(self, job, task_vars):
        answer = self.on_host(task_vars, "import sys; sys.stdout.write(open(sys.argv[1]).read())", job)
        return answer.get("stdout", "").splitlines() if answer.get("rc") == 0 else []

    def follow(self, job, task_vars, limit, sleep=time.sleep, clock=time.monotonic):
        host = task_vars.get("inventory_hostname", "host")
        start = clock()
        shown = 0
        while clock() - start < limit:
            sleep(POLL_SECONDS)
            lines = self.read_job(job, task_vars)
            for line in lines[shown:]:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line being written: read again next time
                if "progress" in record:
                    display.display("%s: %s" % (host, record["progress"]))
                    shown += 1
                elif "result" in record:
                    self.remove(job, task_vars)
                    return record["result"]
        return {"failed": True, "changed": True,
                "msg": "divert_host on %s did not finish within %d s; its job file %s on the host says what it last "
                       "did" % (host, limit, job)}

    def remove(self, job, task_vars):
        self.on_host(task_vars, "import os, sys; os.unlink(sys.argv[1])", job)
