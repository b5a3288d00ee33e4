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


@pytest.fixture
def validations(monkeypatch):
    """The paths the plugins validate from here on, one entry per real validation (not cache hits)."""
    calls = []
    real = _fleet_spec.validate_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(_fleet_spec, "validate_file", counting)
    return calls
