# -*- coding: utf-8 -*-
"""Shared helpers for the action plugin tests: an action plugin built as Ansible's task executor builds it."""

from __future__ import annotations

import os
from unittest.mock import MagicMock

import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import base

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
FLEET = os.path.join(EXAMPLES, "fleet.yml")
BROKEN = os.path.join(EXAMPLES, "broken.yml")


def spec(**changes):
    """A copy of the module_utils tests' small valid spec (a pf host from a profile, an ipfw host of its
    own); `inet6=True` gives it a warning only (pf-inet6: its pf rule diverts IPv6)."""
    data = base()
    if changes.get("inet6"):
        data["profiles"]["edge"]["rules"][0]["family"] = "inet6"
    if "bad_port" in changes:
        data["consumers"]["ids"]["port"] = changes["bad_port"]
    return data


def write_spec(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def make_action(action_class, args, name, task_vars=None, search_path=(), basedir=None):
    """An action plugin instance for a task with these args, as the task executor makes one.

    `search_path` is what the task's get_search_path() gives (role and playbook directories);
    `basedir` is the loader's base directory (the playbook's directory).
    """
    task = MagicMock()
    task.args = dict(args)
    task.action = name
    task.async_val = 0
    task.check_mode = False
    task.get_search_path.return_value = list(search_path)
    loader = DataLoader()
    if basedir is not None:
        loader.set_basedir(str(basedir))
    action = action_class(task, MagicMock(), PlayContext(), loader=loader, templar=None, shared_loader_obj=None)
    action._load_name = name  # set by Ansible's plugin loader
    return action


def run(action_class, args, name, task_vars=None, **kwargs):
    action = make_action(action_class, args, name, **kwargs)
    return action.run(task_vars=task_vars if task_vars is not None else {})
