# -*- coding: utf-8 -*-
"""Shared helpers for the module_utils tests: a small valid spec and ways to vary it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

import yaml

from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_text

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
GOLDEN = os.path.join(HERE, "golden")

BASE = {
    "version": 1,
    "consumers": {
        "ids": {"port": 9000, "sockets": 3, "service": "suricata"},
        "appid": {"port": 9100, "sockets": 1, "service": "appidd"},
    },
    "profiles": {
        "edge": {
            "backend": "pf",
            "platform": "freebsd",
            "consumers": ["ids"],
            "rules": [{"name": "web", "consumer": "ids", "interface": "em0", "protocol": "tcp", "to_ports": [80]}],
        },
    },
    "hosts": {
        "fw1": {"profile": "edge"},
        "fw2": {
            "backend": "ipfw", "platform": "freebsd", "consumers": ["appid"],
            "rules": [{"name": "dns", "consumer": "appid", "protocol": "udp", "to_ports": [53]}],
        },
    },
}


def base():
    return copy.deepcopy(BASE)


def dump(spec):
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False)


def report_for(spec):
    return validate_text(dump(spec), file="spec.yml")


def codes(report):
    return sorted({d.code for d in report.diagnostics})


def subprocess_env(**extra):
    """Environment for a child Python that must import ansible_collections.divert.fleet as we do."""
    from ansible_collections.divert.fleet.plugins.module_utils import _cli
    module = os.path.abspath(_cli.__file__)  # .../ansible_collections/divert/fleet/plugins/module_utils/_cli.py
    collections_root = module
    for _level in range(6):
        collections_root = os.path.dirname(collections_root)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (collections_root, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env
