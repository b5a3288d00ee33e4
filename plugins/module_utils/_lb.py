# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The load-balancing model of divert groups. Private to the divert.fleet collection.

THIS IS A MODEL, derived from source code and not yet confirmed on a running
kernel. It is the single source for the `lb-degenerate` and `lb-ignored`
warnings, for `divert-fleet plan`, and for the test twin's selection checks.

Facts it rests on (freebsd-facts.md):
- The kernel picks a group member as `group[id % count]`, where `id` is the
  64-bit value the packet filter passes with the packet (OPNsense's copy of
  FreeBSD commit 895a0ae67f, "divert: Define semantics for SO_REUSEPORT_LB on
  divert sockets"; read in source, upstream believed identical).
- pf passes its state ID; packets without a state pass 0. ipfw passes 0
  always, so under ipfw every packet reaches the first member (read in source).
- pf stores state IDs big-endian, `s->id = htobe64(counter)`, and the counter
  starts at the time pf was enabled in Unix seconds (read in source).

Reasoning (inferred): on a little-endian CPU (amd64, arm64) the kernel reads the
byte-swapped counter as its `id`. While the counter is below 2**32 (until about
the year 2106) the low 32 bits of that value are zero, so `id` is a multiple of
2**32 and therefore of every power of two up to 32. With `count = 2**k * m`
(m odd), `id % count` is a multiple of 2**k: only members 0, 2**k, 2*2**k, ...
can be chosen - m of them, the odd part of the group size. 32 sockets: 1
receives; 24: 3; 31: all 31. On a big-endian CPU the value is the counter
itself and every member can receive.

Older FreeBSD releases put the CPU number in the top byte before swapping, so
there the low byte of `id` is the CPU number: this model does not cover them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

MAX_GROUP = 32  # divert(4): at most 32 sockets per load-balancing group


def odd_part(size):
    """The odd factor of a group size: 24 -> 3, 32 -> 1, 31 -> 31."""
    if size < 1:
        raise ValueError("a group has at least one socket, not %d" % size)
    while size % 2 == 0:
        size //= 2
    return size


def kernel_id(counter, little_endian=True):
    """The 64-bit `id` the divert code sees for pf state number `counter` (htobe64, read natively)."""
    stored = struct.pack(">Q", counter & 0xFFFFFFFFFFFFFFFF)
    return struct.unpack("<Q" if little_endian else ">Q", stored)[0]


def member_for_state(size, counter, little_endian=True):
    """Index of the group member that pf state number `counter` reaches in a group of `size`."""
    return kernel_id(counter, little_endian) % size


def receivers(backend, size, little_endian=True):
    """Indexes of the members of a group of `size` sockets that can receive flows.

    pf with stateful rules: the multiples of the group size's power-of-two part
    (little-endian CPUs), all members on big-endian CPUs. ipfw: the first only.
    """
    if size < 1:
        raise ValueError("a group has at least one socket, not %d" % size)
    if backend == "ipfw":
        return [0]
    if not little_endian:
        return list(range(size))
    step = size // odd_part(size)
    return list(range(0, size, step))


def effective_size(backend, size, little_endian=True):
    """How many members of the group will receive flows."""
    return len(receivers(backend, size, little_endian))


def explain(backend, size):
    """One sentence on which members receive flows, for warnings and plans."""
    used = effective_size(backend, size)
    if backend == "ipfw":
        if size == 1:
            return "ipfw passes no flow identifier; the single socket receives every packet"
        return ("ipfw passes no flow identifier, so every packet reaches the first of the %d sockets; "
                "the other %d stay idle" % (size, size - 1))
    if used == size:
        return "all %d sockets receive flows" % size
    return ("pf's state IDs are stored big-endian, so on little-endian CPUs (amd64, arm64) `id %% %d` "
            "only lands on multiples of %d: only %d of the %d sockets receive flows (a model inferred from the "
            "source, not yet measured on a kernel)" % (size, size // used, used, size))
