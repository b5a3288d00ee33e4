# -*- coding: utf-8 -*-
"""The README's table of validation codes is the library's: every code, with its severity."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import ROOT


def test_readme_lists_every_code_with_its_severity():
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (error|warning) \|", text, re.M))
    assert rows == dict((code, severity) for code, (severity, _what) in CODES.items())
