# -*- coding: utf-8 -*-
"""Every test that loads a spec runs on each loader path: the plain-subset reader with YAML for the rest
("auto", what the command and the plugins use) and YAML alone ("yaml")."""

from __future__ import annotations

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _loader

LOADER_PATHS = ("auto", "yaml")
# The test modules that load specs (by file, text or data), directly or through the command and the plugins.
ON_EACH_LOADER_PATH = (
    "test_loader", "test_checks", "test_cli", "test_hostile", "test_render", "test_schema", "test_lb_plan",
    "test_hostile_actions", "test_validate_action", "test_render_action", "test_validate_report",
)


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rsplit(".", 1)[-1] in ON_EACH_LOADER_PATH:
        if "spec_loader" not in metafunc.fixturenames:
            metafunc.fixturenames.append("spec_loader")
        metafunc.parametrize("spec_loader", LOADER_PATHS, indirect=True)


@pytest.fixture
def spec_loader(request, monkeypatch):
    """The loader path of this run of the test, for the process and for the commands it starts."""
    path = getattr(request, "param", _loader.LOADER)
    monkeypatch.setattr(_loader, "LOADER", path)
    monkeypatch.setenv("DIVERT_FLEET_LOADER", path)
    return path
