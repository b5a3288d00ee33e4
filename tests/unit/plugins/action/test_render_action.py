# -*- coding: utf-8 -*-
"""The divert.fleet.render action plugin: a thin layer over module_utils._render and _plan."""

from __future__ import annotations

import json

import pytest

from ansible_collections.divert.fleet.plugins.action.render import LISTED_HOSTS, ActionModule
from ansible_collections.divert.fleet.plugins.module_utils import _plan, _render
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_data, validate_file
from ansible_collections.divert.fleet.tests.unit.plugins.action.action_helpers import (
    BROKEN, FLEET, make_action, spec, write_spec,
)

NAME = "divert.fleet.render"
EXAMPLE_HOSTS = sorted(validate_file(FLEET).fleet.hosts)


def render(args, inventory_hostname=None, **kwargs):
    task_vars = {"inventory_hostname": inventory_hostname} if inventory_hostname else {}
    return make_action(ActionModule, args, NAME, **kwargs).run(task_vars=task_vars)


def test_plugin_runs_on_the_controller():
    assert ActionModule._requires_connection is False
    assert ActionModule.TRANSFERS_FILES is False


@pytest.mark.parametrize("name", EXAMPLE_HOSTS)
def test_renders_each_example_host_as_the_library_does(name):
    host = validate_file(FLEET).fleet.hosts[name]
    result = render({"spec": FLEET, "host": name})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["text"] == _render.render(host)
    assert result["digest"] == host.digest()
    assert result["backend"] == host.backend
    assert result["divert_ports"] == _render.divert_ports(host)
    assert all(isinstance(port, int) for port in result["divert_ports"])
    assert result["host"] == host.as_dict()
    assert result["plan"] == _plan.host_plan(host)
    assert result["file_name"] == _render.file_name(host)
    assert result["spec"] == FLEET
    # Results travel between processes as JSON-like data.
    assert json.loads(json.dumps(result)) == result


def test_backends_and_file_names():
    pf = render({"spec": FLEET, "host": "fw-edge-01"})
    ipfw = render({"spec": FLEET, "host": "fw-lab-01"})
    assert (pf["backend"], pf["file_name"]) == ("pf", "fw-edge-01.pf.conf")
    assert (ipfw["backend"], ipfw["file_name"]) == ("ipfw", "fw-lab-01.ipfw.rules")
    assert "divert-to" in pf["text"] and "\nadd " in ipfw["text"]
    assert pf["text"].splitlines()[1] == "# spec digest sha256:%s" % pf["digest"]


def test_host_defaults_to_the_inventory_hostname():
    result = render({"spec": FLEET}, inventory_hostname="fw-edge-02")
    assert result["host"]["name"] == "fw-edge-02"
    assert result["text"] == render({"spec": FLEET, "host": "fw-edge-02"})["text"]


def test_host_overrides_the_inventory_hostname():
    result = render({"spec": FLEET, "host": "fw-lab-01"}, inventory_hostname="fw-edge-02")
    assert result["host"]["name"] == "fw-lab-01"


def test_no_host_at_all():
    result = render({"spec": FLEET})
    assert result["failed"] is True
    assert "set `host`" in result["msg"]


def test_host_not_in_the_spec_lists_the_spec_hosts():
    result = render({"spec": FLEET}, inventory_hostname="fw-core-01")
    assert result["failed"] is True
    assert result["msg"] == "host fw-core-01 is not in fleet spec %s; its hosts are: %s" % (
        FLEET, ", ".join(validate_file(FLEET).fleet.hosts))
    assert "text" not in result


def test_long_host_lists_are_cut_short():
    data = spec()
    for index in range(LISTED_HOSTS + 5):
        data["hosts"]["edge%02d" % index] = {"profile": "edge"}
    result = render({"data": data, "host": "nope"})
    assert result["failed"] is True
    assert result["msg"].endswith("edge%02d and 7 more" % (LISTED_HOSTS - 3))


def test_invalid_spec_is_refused_with_its_diagnostics():
    result = render({"spec": BROKEN, "host": "fw-lab-01"})
    report = validate_file(BROKEN)
    assert result["failed"] is True
    assert result["changed"] is False
    assert "text" not in result
    assert result["msg"].startswith("fleet spec %s is invalid: " % BROKEN)
    assert result["errors"] == [d.as_dict() for d in report.errors]
    assert result["spec_warnings"] == [d.as_dict() for d in report.warnings]


def test_data_instead_of_a_path():
    data = spec()
    result = render({"data": data, "host": "fw2"})
    host = validate_data(data).fleet.hosts["fw2"]
    assert result["text"] == _render.render_ipfw(host)
    assert result["divert_ports"] == [9100]
    assert result["spec"] is None


def test_warnings_render_unless_strict():
    data = spec(inet6=True)
    lenient = render({"data": data, "host": "fw1"})
    assert not lenient.get("failed")
    assert "warnings" not in lenient  # validate shows them; one render per host would repeat them
    strict = render({"data": data, "host": "fw1", "strict": True})
    assert strict["failed"] is True
    assert "warning pf-inet6" in strict["msg"]
    assert "text" not in strict


@pytest.mark.parametrize("args, message", [
    ({"host": "fw1"}, "one of the following is required: spec, data"),
    ({"spec": FLEET, "data": {"version": 1}, "host": "fw1"}, "mutually exclusive"),
    ({"spec": FLEET, "hostname": "fw1"}, "Unsupported parameters"),
])
def test_bad_arguments(args, message):
    result = render(args)
    assert result["failed"] is True
    assert message in result["msg"]


def test_one_validation_for_a_loop_over_the_hosts(tmp_path, validations):
    path = write_spec(tmp_path / "fleet.yml", spec())
    texts = [render({"spec": path, "host": name})["text"] for name in ("fw1", "fw2", "fw1")]
    assert validations == [path]
    assert texts[0] == texts[2]


def test_all_hosts_renders_the_fleet_in_one_validation(validations):
    result = render({"spec": FLEET, "all_hosts": True})
    assert not result.get("failed"), result.get("msg")
    assert sorted(result["hosts"]) == EXAMPLE_HOSTS and len(validations) == 1
    fleet = validate_file(FLEET).fleet
    for name, rendered in result["hosts"].items():
        assert rendered["text"] == _render.render(fleet.hosts[name])
        assert rendered["groups"] == dict((str(g.port), g.size) for g in fleet.hosts[name].groups())
    assert result["hosts"]["fw-edge-02"]["groups"] == {"8000": 7, "8400": 3}
    assert json.loads(json.dumps(result)) == result


def test_all_hosts_and_host_exclude_each_other():
    result = render({"spec": FLEET, "all_hosts": True, "host": "fw-edge-01"})
    assert result.get("failed") and "mutually exclusive" in result["msg"]
