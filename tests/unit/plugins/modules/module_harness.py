# -*- coding: utf-8 -*-
"""Running a module's main() in-process with given arguments and a scripted FreeBSD."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json

import pytest

from ansible.module_utils import basic

try:  # ansible-core 2.19 and later
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # older ansible-core: the classic way
    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args=None):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


class Exit(Exception):
    def __init__(self, result, failed):
        super(Exit, self).__init__(result)
        self.result = result
        self.failed = failed


def run_module(module, args, monkeypatch, host=None):
    """main() of `module` with `args`; returns (result, failed). `host` replaces FreeBSDHost()."""
    def exit_json(self, **kwargs):
        raise Exit(kwargs, False)

    def fail_json(self, **kwargs):
        raise Exit(kwargs, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    if host is not None:
        monkeypatch.setattr(module, "FreeBSDHost", lambda: host)
    with patch_module_args(args):
        with pytest.raises(Exit) as info:
            module.main()
    return info.value.result, info.value.failed
