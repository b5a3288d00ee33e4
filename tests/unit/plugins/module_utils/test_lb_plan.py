# -*- coding: utf-8 -*-
"""The load-balancing model and the rollout plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _lb, _plan
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import EXAMPLES


@pytest.mark.parametrize("size, used", [(1, 1), (2, 1), (3, 3), (4, 1), (6, 3), (12, 3), (24, 3), (31, 31),
                                        (32, 1), (30, 15), (20, 5)])
def test_only_the_odd_part_receives_under_pf(size, used):
    assert _lb.effective_size("pf", size) == used
    assert _lb.odd_part(size) == used


@pytest.mark.parametrize("size", range(1, 33))
def test_model_agrees_with_selecting_by_state_id(size):
    """Simulate pf's state counter from a plausible enable time: the members hit are the model's receivers."""
    start = 1_780_000_000  # Unix seconds, mid-2026
    hit = {_lb.member_for_state(size, counter) for counter in range(start, start + 4000)}
    assert hit == set(_lb.receivers("pf", size))


def test_big_endian_hosts_use_every_member():
    assert _lb.receivers("pf", 32, little_endian=False) == list(range(32))
    hit = {_lb.member_for_state(8, c, little_endian=False) for c in range(1000, 1100)}
    assert hit == set(range(8))


def test_kernel_id_is_the_byte_swapped_counter():
    assert _lb.kernel_id(1) == 1 << 56
    assert _lb.kernel_id(0x0102030405060708) == 0x0807060504030201
    assert _lb.kernel_id(0x0102, little_endian=False) == 0x0102


def test_ipfw_reaches_the_first_member_only():
    assert _lb.receivers("ipfw", 1) == [0]
    assert _lb.receivers("ipfw", 16) == [0]
    assert "first" in _lb.explain("ipfw", 16)


def test_group_size_must_be_positive():
    with pytest.raises(ValueError):
        _lb.receivers("pf", 0)


def test_plan_orders_bind_before_divert():
    fleet = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet
    for host in fleet.hosts.values():
        plan = _plan.host_plan(host)
        actions = [step["action"] for step in plan["steps"]]
        assert actions[0] == "load-module"
        assert actions[-3:] == ["check", "load", "verify"]
        # every consumer: configure, start, wait - in that order, all before the check
        for consumer in host.consumers:
            mine = [i for i, step in enumerate(plan["steps"]) if step.get("consumer") == consumer.name]
            assert [plan["steps"][i]["action"] for i in mine] == ["configure", "start", "wait"]
            assert max(mine) < actions.index("check")
            wait = plan["steps"][mine[-1]]
            assert (wait["port"], wait["sockets"]) == (consumer.port, consumer.sockets)
        assert [s["step"] for s in plan["steps"]] == list(range(1, len(actions) + 1))


def test_plan_groups_show_effective_receivers():
    fleet = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet
    groups = {g["port"]: g for g in _plan.host_plan(fleet.hosts["fw-edge-02"])["groups"]}
    assert groups[8010]["size"] == 7 and groups[8010]["receiving"] == 7
    assert groups[8400]["consumers"] == ["classifier"]
    lab = _plan.host_plan(fleet.hosts["fw-lab-01"])
    assert lab["steps"][-2]["action"] == "load" and "swap" in lab["steps"][-2]["text"]
    text = _plan.format_text([lab])
    assert "fw-lab-01 (ipfw on freebsd" in text
