# -*- coding: utf-8 -*-
"""Fixtures shared by the action plugin tests."""

from __future__ import annotations

import pytest

from ansible_collections.divert.fleet.plugins.plugin_utils import _fleet_spec


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts and ends with no cached validation report."""
    _fleet_spec._REPORTS.clear()
    yield
    _fleet_spec._REPORTS.clear()
