# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed kernel's divert load balancing, as one model. Private to the divert.fleet collection.

THIS IS A MODEL, read from source code and computed, not measured on a running kernel. It
is the single source for `divert-fleet plan`, for the `lb-ignored` and `stateless-lb`
diagnostics, and for the test twin's member selection (the twin imports `select_slot`).

Read in source (freebsd-facts.md, "The change"; freebsd-src 895a0ae67f,
sys/netinet/ip_divert.c, sys/netpfil/pf/pf.c, sys/libkern/jenkins_hash.c):
- `divert_packet` picks `dlb->dl_dcb[jenkins_hash(&id, sizeof(uint64_t), 0) % count]`.
  jenkins_hash is Bob Jenkins' lookup3 `hashlittle`; `hashlittle` below is checked against
  lookup3's published vector ("Four score and seven years ago", initval 0 -> 0x17770551).
- pf passes its state ID, `s->id = htobe64(counter)`, so the hash reads the counter's
  big-endian bytes; the counter restarts from the Unix time at every `pfctl -e`
  (`new_unrhdr64(&V_pf_stateid, time_second)` in DIOCSTART). Packets without a state, and
  every ipfw packet, pass id 0: all of them reach one fixed slot,
  `jenkins_hash(0) % count` (0x58c184bf % count).
- Closing a member compacts the group: the last member moves into the freed slot and the
  count drops by one. Nothing is dropped, but since both the modulus and one slot change,
  most running flows change socket (`remap_on_close`). Any change of the count remaps.

Computed, not measured: that the hash spreads pf's counters roughly evenly over every slot
of groups of 2..32 (`spread`). To confirm on a real host, run the collection's reference
consumer (`driver: reflector`) under traffic: it keeps per-socket packet counts in
/var/run/SERVICE.stats.json (also written on SIGUSR1), which show whether every socket of
the group receives flows and which one takes stateless packets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

MAX_GROUP = 32  # DIVCBLBGROUP_SIZE: at most 32 sockets per load-balancing group
_MASK = 0xFFFFFFFF


def _rot(value, shift):
    return ((value << shift) | (value >> (32 - shift))) & _MASK


# lookup3's mix(): each step is `x -= z; x ^= rot(z, k); z += y` over the triple (a, b, c).
_MIX_STEPS = ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4))
# lookup3's final(): each step is `x ^= y; x -= rot(y, k)`.
_FINAL_STEPS = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _mix(abc):
    for x, z, y, shift in _MIX_STEPS:
        abc[x] = ((abc[x] - abc[z]) & _MASK) ^ _rot(abc[z], shift)
        abc[z] = (abc[z] + abc[y]) & _MASK
    return abc


def _final(abc):
    for x, y, shift in _FINAL_STEPS:
        abc[x] = ((abc[x] ^ abc[y]) - _rot(abc[y], shift)) & _MASK
    return abc[2]


def hashlittle(key, initval=0):
    """lookup3's hashlittle(key, len(key), initval): FreeBSD's jenkins_hash (sys/libkern/jenkins_hash.c)."""
    key = bytes(key)
    length = len(key)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    offset = 0
    while length - offset > 12:
        k0, k1, k2 = struct.unpack_from("<III", key, offset)
        a, b, c = _mix([(a + k0) & _MASK, (b + k1) & _MASK, (c + k2) & _MASK])
        offset += 12
    tail = key[offset:]
    if not tail:
        # lookup3: "case 0: return c" - zero-length strings need no mixing
        return c
    tail = tail + b"\0" * (12 - len(tail))
    k0, k1, k2 = struct.unpack("<III", tail)
    return _final([(a + k0) & _MASK, (b + k1) & _MASK, (c + k2) & _MASK])


def state_id_bytes(counter):
    """The 8 bytes the kernel hashes for pf state number `counter`: htobe64(counter) in memory."""
    return struct.pack(">Q", counter & 0xFFFFFFFFFFFFFFFF)


def select_slot(id_bytes, count):
    """divert_packet: the slot `jenkins_hash(&id, 8, 0) % count` a packet with this id reaches."""
    if count < 1:
        raise ValueError("a group has at least one socket, not %d" % count)
    return hashlittle(id_bytes) % count


def member_for_state(count, counter):
    """The slot that pf state number `counter` reaches in a group of `count` sockets."""
    return select_slot(state_id_bytes(counter), count)


STATELESS_ID = b"\0" * 8  # pf without a state and ipfw always pass id 0
STATELESS_HASH = hashlittle(STATELESS_ID)  # 0x58c184bf


def stateless_slot(count):
    """The one slot that every stateless pf packet and every ipfw packet reaches."""
    return select_slot(STATELESS_ID, count)


def receivers(backend, size):
    """Slots of a group of `size` sockets that receive packets: every slot under pf with
    stateful rules, only `stateless_slot(size)` under ipfw."""
    if size < 1:
        raise ValueError("a group has at least one socket, not %d" % size)
    if backend == "ipfw":
        return [stateless_slot(size)]
    return list(range(size))


def compact(members, closed_slot):
    """The group after the member in `closed_slot` closes: the last member moves into its slot."""
    members = list(members)
    last = members.pop()
    if closed_slot < len(members):
        members[closed_slot] = last
    return members


def remap_on_close(count, closed_slot, counters):
    """Of the flows with these pf state counters, how many change socket when the member in
    `closed_slot` of a group of `count` closes (the flows of the closed member included)."""
    members = list(range(count))
    after = compact(members, closed_slot)
    moved = 0
    for counter in counters:
        key = state_id_bytes(counter)
        before = members[select_slot(key, count)]
        if not after or after[select_slot(key, len(after))] != before:
            moved += 1
    return moved


def remap_on_resize(old_count, new_count, counters):
    """Of the flows with these pf state counters, how many reach another slot when a live
    group changes from `old_count` to `new_count` sockets (the hash is not stable across sizes)."""
    return sum(1 for counter in counters
               if select_slot(state_id_bytes(counter), old_count) != select_slot(state_id_bytes(counter), new_count))


def spread(count, counters):
    """Flows per slot for these pf state counters in a group of `count` sockets."""
    hits = [0] * count
    for counter in counters:
        hits[member_for_state(count, counter)] += 1
    return hits


def explain(backend, size):
    """One sentence on which sockets of a group receive packets, for diagnostics and plans."""
    slot = stateless_slot(size)
    if backend == "ipfw":
        if size == 1:
            return "ipfw passes no flow identifier; the single socket receives every packet"
        return ("ipfw passes no flow identifier (id 0), so every packet reaches one socket, slot %d of %d "
                "(jenkins_hash(0) %% %d); the other %d stay idle" % (slot, size, size, size - 1))
    if size == 1:
        return "the single socket receives every flow"
    return ("every one of the %d sockets receives stateful flows (jenkins_hash of the state id %% %d); "
            "stateless packets all reach one socket, slot %d" % (size, size, slot))
