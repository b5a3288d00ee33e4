# -*- coding: utf-8 -*-
"""The divert.fleet.to_pf and divert.fleet.to_ipfw filters: resolved host in, the renderer's text out."""

from __future__ import annotations

import json
import os

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.divert.fleet.plugins.filter.divert import (
    FilterModule, rollout_summaries, rollout_summary, to_ipfw, to_pf)
from ansible_collections.divert.fleet.plugins.module_utils import _plan, _render
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
FLEET = os.path.join(ROOT, "examples", "fleet.yml")
HOSTS = validate_file(FLEET).fleet.hosts
PF_HOSTS = sorted(name for name, host in HOSTS.items() if host.backend == "pf")
IPFW_HOSTS = sorted(name for name, host in HOSTS.items() if host.backend == "ipfw")


def resolved(name):
    """The host as a task result carries it: plain JSON data."""
    return json.loads(json.dumps(HOSTS[name].as_dict()))


def test_the_example_has_both_backends():
    assert PF_HOSTS and IPFW_HOSTS


def test_filters_are_registered_by_name():
    assert FilterModule().filters() == {"to_pf": to_pf, "to_ipfw": to_ipfw, "rollout_summary": rollout_summary,
                                        "rollout_summaries": rollout_summaries}


@pytest.mark.parametrize("name", PF_HOSTS)
def test_to_pf(name):
    assert to_pf(resolved(name)) == _render.render_pf(HOSTS[name])


@pytest.mark.parametrize("name", IPFW_HOSTS)
def test_to_ipfw(name):
    assert to_ipfw(resolved(name)) == _render.render_ipfw(HOSTS[name])


@pytest.mark.parametrize("name", PF_HOSTS)
def test_to_ipfw_refuses_a_pf_host(name):
    with pytest.raises(AnsibleFilterError, match="divert.fleet.to_ipfw: host %s uses backend pf, not ipfw; "
                                                 "use divert.fleet.to_pf" % name):
        to_ipfw(resolved(name))


@pytest.mark.parametrize("name", IPFW_HOSTS)
def test_to_pf_refuses_an_ipfw_host(name):
    with pytest.raises(AnsibleFilterError, match="divert.fleet.to_pf: host %s uses backend ipfw, not pf; "
                                                 "use divert.fleet.to_ipfw" % name):
        to_pf(resolved(name))


@pytest.mark.parametrize("value, message", [
    ("fw-edge-01", "expected a resolved host"),
    (None, "expected a resolved host"),
    ({"name": "fw-edge-01"}, "missing or malformed field"),
    (dict(resolved(PF_HOSTS[0]), backend="nftables"), "backend 'nftables'; expected pf or ipfw"),
])
def test_not_a_resolved_host(value, message):
    for render in (to_pf, to_ipfw):
        with pytest.raises(AnsibleFilterError, match=message) as caught:
            render(value)
        assert str(caught.value).startswith("divert.fleet.%s: " % render.__name__)


def test_a_whole_render_result_is_not_a_host():
    result = {"text": "...", "host": resolved(PF_HOSTS[0]), "backend": "pf"}
    with pytest.raises(AnsibleFilterError, match="missing or malformed field"):
        to_pf(result)


def test_rollout_summary_combines_render_and_module_results():
    fleet = validate_file(FLEET).fleet
    host = fleet.hosts["fw-edge-02"]
    rendered = {"backend": host.backend, "digest": host.digest(), "plan": _plan.host_plan(host)}
    consumers = {"consumers": [{"name": "ids", "changed": True}, {"name": "classifier", "changed": False}],
                 "sockets": {"8000": {"port": 8000, "bound": 7}, "8400": {"port": 8400, "bound": 2}}}
    rules = {"changed": False, "rules": ["a", "b", "c"]}
    summary = rollout_summary(rendered, consumers, rules)
    assert summary["ports"] == [
        {"port": 8000, "live_port": 8000, "consumers": ["ids"], "declared": 7, "bound": 7, "receiving": 7},
        {"port": 8400, "live_port": 8400, "consumers": ["classifier"], "declared": 3, "bound": 2, "receiving": 3}]
    assert summary["rules_loaded"] == 3 and summary["consumers_changed"] == ["ids"]
    assert summary["rules_changed"] is False and summary["failed"] is False
    assert summary["text"] == [
        "pf, digest %s: 3 rules loaded" % host.digest()[:12],
        "port 8000 (ids): 7 of 7 sockets bound, 7 receive flows",
        "port 8400 (classifier): 2 of 3 sockets bound, 3 receive flows",
        "consumers changed: ids"]
    with pytest.raises(AnsibleFilterError):
        rollout_summary({"plan": {}}, consumers, rules)


def test_rollout_summary_of_one_unit_result_shows_the_serving_port():
    fleet = validate_file(FLEET).fleet
    host = fleet.hosts["fw-branch-01"]
    rendered = {"backend": host.backend, "digest": host.digest(), "plan": _plan.host_plan(host)}
    result = {"changed": True, "rules": ["a", "b"], "live_ports": {"ips": 8011, "classifier": 8400},
              "consumers": [{"name": "ips", "changed": True, "action": "switch", "live_port": 8011, "port": 8010},
                            {"name": "classifier", "changed": False, "action": None, "live_port": 8400}],
              "sockets": {"8011": {"port": 8011, "bound": 1}, "8400": {"port": 8400, "bound": 3}}}
    summary = rollout_summary(rendered, result)
    assert summary["text"][1] == "port 8010, serving on 8011 (ips): 1 of 1 sockets bound, 1 receive flows"
    assert summary["consumers_changed"] == ["ips (switch)"] and summary["rules_loaded"] == 2


def test_rollout_summaries_of_a_batch_name_each_spec_host_that_ran():
    fleet = validate_file(FLEET).fleet
    rendered = dict((name, {"backend": host.backend, "digest": host.digest(), "plan": _plan.host_plan(host)})
                    for name, host in fleet.hosts.items())
    ran = {"changed": False, "rules": ["a"], "consumers": [{"name": "ips", "changed": False, "live_port": 8011}],
           "sockets": {"8011": {"port": 8011, "bound": 1}}}
    hostvars = {"fw-branch-01": {"host_result": ran}, "fw-lab-01": {}, "not-in-spec": {"host_result": ran}}
    summaries = rollout_summaries(rendered, hostvars, ["not-in-spec", "fw-lab-01", "fw-branch-01"])
    assert list(summaries) == ["fw-branch-01", "fw-lab-01"]  # spec hosts only, by name
    assert summaries["fw-branch-01"] == rollout_summary(rendered["fw-branch-01"], ran)["text"]
    assert summaries["fw-branch-01"][1].startswith("port 8010, serving on 8011 (ips): 1 of 1 sockets bound")
    assert summaries["fw-lab-01"][0].endswith("0 rules loaded")  # no result registered: not run
    with pytest.raises(AnsibleFilterError, match="rollout_summaries"):
        rollout_summaries({"fw-lab-01": {"plan": {}}}, hostvars, ["fw-lab-01"])
