"""Fixtures of the twin tests."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twin_fixtures import TWINCTL, Host  # noqa: E402


@pytest.fixture(scope="session")
def twin_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("twin"))
    yield root
    subprocess.run([sys.executable, TWINCTL, "down", "--root", root], capture_output=True)


def _fresh(twin_root, name, flavour):
    """A freshly installed twin host: reset if this session started it already, else started."""
    h = Host(twin_root, name, flavour)
    if os.path.exists(os.path.join(h.dir, "host.json")):
        h.twinctl("reset", "--host", name)
    else:
        h.twinctl("up", "--host", "%s:%s" % (name, flavour))
    return h


@pytest.fixture
def host(twin_root):
    """A freshly installed FreeBSD twin host."""
    h = _fresh(twin_root, "fbsd", "freebsd")
    yield h
    h.call(op="traffic_stop")


@pytest.fixture
def opn(twin_root):
    """A freshly installed OPNsense twin host."""
    h = _fresh(twin_root, "opn", "opnsense")
    yield h
    h.call(op="traffic_stop")
