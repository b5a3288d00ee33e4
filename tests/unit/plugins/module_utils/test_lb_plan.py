# -*- coding: utf-8 -*-
"""The load-balancing model and the rollout plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _lb, _plan
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import EXAMPLES


# lookup3.c's driver5 vectors (Bob Jenkins' published test values for hashlittle).
@pytest.mark.parametrize("key, initval, expected", [
    (b"", 0, 0xDEADBEEF),
    (b"", 0xDEADBEEF, 0xBD5B7DDE),
    (b"Four score and seven years ago", 0, 0x17770551),
    (b"Four score and seven years ago", 1, 0xCD628161),
])
def test_hashlittle_matches_lookup3s_vectors(key, initval, expected):
    assert _lb.hashlittle(key, initval) == expected


def test_hashlittle_tails_of_every_length_differ():
    """Each tail length 1..12 is its own case of lookup3's switch: no two prefixes hash alike."""
    text = b"Four score and seven years ago"
    values = {_lb.hashlittle(text[:n]) for n in range(len(text) + 1)}
    assert len(values) == len(text) + 1


def test_stateless_packets_reach_one_fixed_slot():
    # freebsd-facts.md: 0x58c184bf % count: size 2 -> slot 1, 4 -> 3, 8 -> 7, 32 -> 31.
    assert _lb.STATELESS_HASH == 0x58C184BF
    assert [_lb.stateless_slot(n) for n in (1, 2, 4, 8, 32)] == [0, 1, 3, 7, 31]
    assert _lb.receivers("ipfw", 4) == [3]
    assert "slot 3 of 4" in _lb.explain("ipfw", 4)


def test_state_id_is_hashed_as_pf_stores_it():
    assert _lb.state_id_bytes(1) == b"\0" * 7 + b"\1"  # htobe64
    assert _lb.member_for_state(8, 1) == _lb.hashlittle(b"\0" * 7 + b"\1") % 8


@pytest.mark.parametrize("size", range(1, 33))
def test_every_slot_receives_stateful_flows(size):
    """pf's counter from a plausible `pfctl -e` time: every slot receives, roughly evenly."""
    start = 1_780_000_000  # Unix seconds, mid-2026: DIOCSTART seeds the counter with time_second
    hits = _lb.spread(size, range(start, start + 400 * size))
    assert _lb.receivers("pf", size) == list(range(size))
    assert min(hits) > 0
    assert max(hits) < 1.5 * 400 and min(hits) > 0.5 * 400, hits


def test_closing_a_member_compacts_the_group():
    assert _lb.compact([10, 11, 12, 13], 1) == [10, 13, 12]
    assert _lb.compact([10, 11, 12, 13], 3) == [10, 11, 12]
    assert _lb.compact([10], 0) == []


def test_a_close_remaps_most_flows_and_a_resize_too():
    start = 1_780_000_000
    counters = range(start, start + 8000)
    moved = _lb.remap_on_close(8, 2, counters)
    # at least the closed member's eighth moves; with the modulus changed, most of the rest follow
    assert 0.5 * len(counters) < moved < len(counters)
    assert _lb.remap_on_resize(8, 8, counters) == 0
    assert _lb.remap_on_resize(7, 5, counters) > 0.5 * len(counters)


def test_group_size_must_be_positive():
    with pytest.raises(ValueError):
        _lb.receivers("pf", 0)
    with pytest.raises(ValueError):
        _lb.stateless_slot(0)


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


def test_plan_groups_show_every_member_receiving():
    fleet = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet
    groups = {g["port"]: g for g in _plan.host_plan(fleet.hosts["fw-edge-02"])["groups"]}
    assert groups[8000]["size"] == 7 and groups[8000]["receiving"] == 7
    assert groups[8000]["stateless_slot"] == 0x58C184BF % 7
    assert groups[8400]["consumers"] == ["classifier"]
    lab = _plan.host_plan(fleet.hosts["fw-lab-01"])
    assert lab["steps"][-2]["action"] == "load" and "swap" in lab["steps"][-2]["text"]
    text = _plan.format_text([lab])
    assert "fw-lab-01 (ipfw on freebsd" in text
    assert "all reach slot 0" in text


def test_plan_of_a_32_socket_pf_group_shows_32_receiving():
    from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import base, report_for
    spec = base()
    spec["consumers"]["ids"]["sockets"] = 32
    host = report_for(spec).fleet.hosts["fw1"]
    (group,) = _plan.host_plan(host)["groups"]
    assert (group["receiving"], group["receivers"], group["stateless_slot"]) == (32, list(range(32)), 31)
    assert "32 of 32" in _plan.format_text([_plan.host_plan(host)])
