"""Load-balancing groups of the seed kernel (freebsd-facts.md: "The change", "Divert sockets").

The twin selects members with the collection's own model, plugins/module_utils/_lb.py; these
tests check the twin's packet path against that model and the facts it encodes."""
import os

import pytest

from twin_fixtures import CHECKOUT, divert_setup
from twinlib import kernel

LB = kernel.LB
STATEFUL = "pass in quick inet proto tcp to port 80 keep state divert-to 8000\n"


def slot_of_socket(rep):
    return {int(sid): s["slot"] for sid, s in rep["sockets"].items()}


def test_twin_selects_with_the_collections_model():
    assert os.path.realpath(LB.__file__) == os.path.realpath(
        os.path.join(CHECKOUT, "plugins", "module_utils", "_lb.py"))
    # lookup3's published vector (sys/libkern/jenkins_hash.c is lookup3 hashlittle)
    assert LB.hashlittle(b"Four score and seven years ago") == 0x17770551
    assert kernel.state_id(1_780_000_000) == (1_780_000_000).to_bytes(8, "big")


def test_fact_group_of_32_every_slot_receives_flows(host):
    """fact: member = jenkins_hash(&id, 8, 0) % count, id = htobe64(pf counter): every socket
    of a group of 32 receives flows."""
    divert_setup(host, 32)
    host.pf_load(STATEFUL)
    flows = host.flows(1000, packets=2)
    counters = [f["counter"] for f in flows]
    assert counters == list(range(counters[0], counters[0] + 1000))
    assert counters[0] == host.call(op="state")["pf_since"]          # the counter starts at pfctl -e
    assert [f["slot"] for f in flows] == [LB.member_for_state(32, c) for c in counters]
    rep = host.report()
    per_slot = [0] * 32
    for s in rep["sockets"].values():
        per_slot[s["slot"]] += s["packets"]
    assert per_slot == [2 * n for n in LB.spread(32, counters)]
    assert min(per_slot) > 0, per_slot
    assert rep["reinjected"] == 2000 and rep["flows_remapped"] == 0 and rep["dropped_full"] == 0


@pytest.mark.parametrize("sockets", [3, 4])
def test_fact_stateless_packets_reach_slot_hash_of_zero(host, sockets):
    """fact: packets without a state pass id 0 and reach slot jenkins_hash(0) % count."""
    divert_setup(host, sockets)
    host.pf_load("pass in quick inet proto udp to port 53 no state divert-to 8000\n")
    flows = host.flows(12, proto=17, dport=53)
    slot = LB.stateless_slot(sockets)
    assert slot == 0x58c184bf % sockets
    assert {f["slot"] for f in flows} == {slot}
    rep = host.report()
    assert {s["slot"]: s["packets"] for s in rep["sockets"].values()} == {
        i: (12 if i == slot else 0) for i in range(sockets)}


def test_fact_pf_diverts_inet6(host):
    """fact: pf on the seed kernel diverts IPv6 too (one pf_test; ip_divert.c reinjects IPv6)."""
    divert_setup(host, 2)
    host.pf_load("pass in quick inet6 proto tcp to port 80 keep state divert-to 8000\n")
    r = host.flow(packets=3, af=6, src="2001:db8::1", dst="2001:db8::2")
    assert r["verdicts"] == ["divert"] * 3
    assert r["slot"] == LB.member_for_state(2, r["counter"])
    rep = host.report()
    assert rep["reinjected"] == 3 and rep["passed"] == 3


def test_fact_killing_one_member_compacts_remaps_flows_and_drops_none(host):
    """fact: closing one member compacts the group (the last moves into its slot): nothing is
    dropped, but the flows whose socket changes are remapped, exactly as _lb.remap_on_close says."""
    divert_setup(host, 4, mode="workers")
    host.pf_load(STATEFUL)
    held = host.flows(60, name="h", end=False)
    counters = [f["counter"] for f in held]
    members = host.call(op="state")["slots"]["8000"]
    assert [f["sock"] for f in held] == [members[LB.member_for_state(4, c)] for c in counters]
    host.call(op="drain", timeout=10)
    workers = host.sh("cat /var/run/twinconsumer.workers", check=True).stdout.split()
    host.sh("kill -9 %s" % workers[1], check=True)       # the worker bound second: slot 1
    host.wait_sockets(8000, 3)
    after = LB.compact(members, 1)
    assert host.call(op="state")["slots"]["8000"] == after
    more = [host.more("h%d" % i) for i in range(60)]
    assert {v for m in more for v in m["verdicts"]} == {"divert"}           # drops none
    assert [m["sock"] for m in more] == [after[LB.member_for_state(3, c)] for c in counters]
    rep = host.report()
    assert rep["flows_remapped"] == LB.remap_on_close(4, 1, counters) > 0
    assert (rep["dropped_noport"], rep["dropped_full"], rep["swallowed"]) == (0, 0, 0)
    # the member closed while a live rule diverted to its port: invariant I2 broken once
    assert rep["withdraw_violations"] == 1
    assert rep["withdraw_violation_details"][0]["reason"] == "rule"


def test_fact_state_counter_restarts_at_each_pfctl_e(host):
    """fact: DIOCSTART runs new_unrhdr64(&V_pf_stateid, time_second) at every pfctl -e."""
    divert_setup(host, 1)
    host.pf_load(STATEFUL)
    first = host.call(op="state")
    assert first["pf_counter"] == first["pf_since"]
    host.flows(5, name="c")
    assert host.call(op="state")["pf_counter"] == first["pf_since"] + 5
    host.sh("pfctl -d && pfctl -e", check=True)
    again = host.call(op="state")
    assert again["pf_counter"] == again["pf_since"] >= first["pf_since"]
    f = host.flow(packets=1, sport=45000, end=False, name="shown")
    assert f["counter"] == again["pf_since"]
    assert "id: %016x creatorid:" % f["counter"] in host.sh("pfctl -ss -vv").stdout
