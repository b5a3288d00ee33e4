# -*- coding: utf-8 -*-
"""End to end: the collection's playbooks run by ansible-playbook: validate and render with no inventory,
site.yml as far as it goes on the controller (its --limit and its arguments), never touching a host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _render, _validate

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


def _collections_root():
    """The directory holding the ansible_collections/ through which this test imported divert.fleet."""
    path = os.path.abspath(_validate.__file__)
    for _level in range(5):  # module_utils, plugins, fleet, divert, ansible_collections
        path = os.path.dirname(path)
    return os.path.dirname(path) if os.path.basename(path) == "ansible_collections" else None


def _ansible_playbook():
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return beside if os.access(beside, os.X_OK) else shutil.which("ansible-playbook")


ANSIBLE_PLAYBOOK = _ansible_playbook()
COLLECTIONS = _collections_root()

pytestmark = [
    pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-playbook is not on PATH"),
    pytest.mark.skipif(COLLECTIONS is None, reason="divert.fleet is not imported from an ansible_collections tree"),
]


def playbook(tmp_path, name, *extra_vars, options=()):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    env.pop("ANSIBLE_FORCE_COLOR", None)
    command = [ANSIBLE_PLAYBOOK, "divert.fleet.%s" % name] + list(options)
    for extra in extra_vars:
        command += ["-e", extra]
    # From the collection root, as a user runs it from a checkout: relative specs are found there.
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_validate_playbook_on_a_valid_spec(tmp_path):
    run = playbook(tmp_path, "validate", "fleet_spec=examples/fleet.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    report = _validate.validate_file(os.path.join(ROOT, "examples", "fleet.yml"))
    assert "examples/fleet.yml is valid: %d hosts" % report.summary()["hosts"] in run.stdout
    assert "Hosts: %s." % ", ".join(report.fleet.hosts) in run.stdout


def test_validate_playbook_fails_on_an_invalid_spec(tmp_path):
    run = playbook(tmp_path, "validate", "fleet_spec=examples/broken.yml")
    assert run.returncode == 2, run.stdout + run.stderr
    output = run.stdout + run.stderr
    first = _validate.validate_file(os.path.join(ROOT, "examples", "broken.yml")).errors[0]
    assert "examples/broken.yml:%d:%d: error %s: " % (first.line, first.column, first.code) in output
    assert "failed=1" in run.stdout


def test_validate_playbook_says_what_it_needs(tmp_path):
    run = playbook(tmp_path, "validate")
    assert run.returncode != 0
    assert "ansible-playbook divert.fleet.validate -e fleet_spec=FILE" in run.stdout + run.stderr


def test_render_playbook_writes_every_host(tmp_path):
    out_dir = tmp_path / "rendered"
    run = playbook(tmp_path, "render", "fleet_spec=examples/fleet.yml", "out_dir=%s" % out_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    hosts = _validate.validate_file(os.path.join(ROOT, "examples", "fleet.yml")).fleet.hosts.values()
    assert sorted(os.listdir(str(out_dir))) == sorted(_render.file_name(host) for host in hosts)
    for host in hosts:
        assert (out_dir / _render.file_name(host)).read_text() == _render.render(host)


def test_render_playbook_writes_nothing_for_an_invalid_spec(tmp_path):
    out_dir = tmp_path / "rendered"
    run = playbook(tmp_path, "render", "fleet_spec=examples/broken.yml", "out_dir=%s" % out_dir)
    assert run.returncode == 2, run.stdout + run.stderr
    assert not out_dir.exists()


# ---- validate.yml: the report file ---------------------------------------------------------------

def command_output(*argv):
    """The divert-fleet command's stdout (bytes) and exit code, run from the collection root."""
    from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import subprocess_env

    run = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "divert-fleet"), "validate"] + list(argv),
                         cwd=ROOT, env=subprocess_env(), capture_output=True, check=False)
    return run.stdout, run.returncode


@pytest.mark.parametrize("spec, report_format, exit_code", [
    ("examples/broken.yml", "sarif", 2),
    ("examples/fleet.yml", "junit", 0),
    ("examples/broken.yml", "json", 2),
])
def test_validate_playbook_writes_the_commands_report(tmp_path, spec, report_format, exit_code):
    dest = tmp_path / ("fleet." + report_format)
    run = playbook(tmp_path, "validate", "fleet_spec=%s" % spec, "fleet_format=%s" % report_format,
                   "fleet_dest=%s" % dest)
    assert run.returncode == exit_code, run.stdout + run.stderr
    expected, _code = command_output(spec, "--format", report_format)
    assert dest.read_bytes() == expected
    if exit_code == 0:
        assert "Report: %s (%s)." % (dest, report_format) in run.stdout


def test_validate_playbook_writes_text_by_default(tmp_path):
    dest = tmp_path / "fleet.txt"
    run = playbook(tmp_path, "validate", "fleet_spec=examples/fleet.yml", "fleet_dest=%s" % dest)
    assert run.returncode == 0, run.stdout + run.stderr
    assert dest.read_bytes() == command_output("examples/fleet.yml")[0]


def test_validate_playbook_wants_a_file_for_a_format(tmp_path):
    run = playbook(tmp_path, "validate", "fleet_spec=examples/fleet.yml", "fleet_format=sarif")
    assert run.returncode != 0
    assert "fleet_format is the format of the report file: add -e fleet_dest=FILE" in run.stdout + run.stderr


# ---- site.yml, as far as the controller goes -----------------------------------------------------
# The hosts' interpreter does not exist, so no module ever runs on this machine: a host reached by the
# roles fails at its first module task, after the role's argument check (an action on the controller)
# has accepted the host's slice of the rendered spec.

def site_inventory(tmp_path):
    inventory = tmp_path / "inventory.yml"
    host = "{ansible_connection: local, ansible_python_interpreter: %s}" % (tmp_path / "no-python")
    inventory.write_text("all:\n  hosts:\n" + "".join(
        "    %s: %s\n" % (name, host) for name in ("fw-edge-01", "fw-edge-02", "not-in-spec")))
    return str(inventory)


def test_site_limit_to_a_host_outside_the_spec_runs_and_leaves_it_alone(tmp_path):
    run = playbook(tmp_path, "site", "fleet_spec=examples/fleet.yml",
                   options=["-i", site_inventory(tmp_path), "--limit", "not-in-spec"])
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "In the inventory but not in the spec: not-in-spec" in output
    assert "In the spec but not in the inventory: fw-branch-01, fw-lab-01" in output
    assert "not-in-spec                : ok=" in run.stdout
    assert "fw-edge-01" not in run.stdout.split("PLAY RECAP")[1]


def test_site_limit_to_a_spec_host_reaches_its_roles_only(tmp_path):
    run = playbook(tmp_path, "site", "fleet_spec=examples/fleet.yml",
                   options=["-i", site_inventory(tmp_path), "--limit", "fw-edge-01"])
    output = run.stdout + run.stderr
    assert "has no attribute" not in output and "is undefined" not in output, output
    # The host's module task got its arguments from the host's slice of the rendering (none was
    # undefined, above) and then failed for want of the host's interpreter; no other host took part.
    unit = output.split("TASK [divert.fleet.host : Consumers and divert rules changed as one unit]")[1]
    unit = unit.split("TASK [")[0]
    assert "fatal: [fw-edge-01]" in unit and "no-python" in unit and "fw-edge-02" not in unit, output
    recap = run.stdout.split("PLAY RECAP")[1]
    assert "fw-edge-01" in recap and "fw-edge-02" not in recap and "not-in-spec" not in recap
    assert run.returncode == 2


def test_site_says_what_it_needs(tmp_path):
    run = playbook(tmp_path, "site", options=["-i", site_inventory(tmp_path)])
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Name the fleet spec to roll out: ansible-playbook divert.fleet.site -i INVENTORY -e fleet_spec=FILE" in output
    assert "TASK [Validate the spec and render every host's rules]" not in output
