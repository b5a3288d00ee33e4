# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes shared by the on-host modules. Private to the divert.fleet collection."""

from __future__ import annotations


class ModuleDocFragment:
    # divert.fleet.divert_host, divert_sockets, divert_rules and divert_consumers: all run on FreeBSD or OPNsense
    # through the on-host library (plugins/module_utils/_host_*.py) and converge to the same state when run again.
    DOCUMENTATION = r"""
options: {}
attributes:
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
  platform:
    description: FreeBSD and OPNsense hosts, with C(ipdivert.ko) available.
    support: full
    platforms: freebsd
"""

    # divert_host, divert_rules and divert_consumers change the host: they check what the host is, and take
    # the host-wide lock so that two rollouts never interleave on one host.
    CHANGE = r"""
options:
  platform:
    description:
      - What the host is. Omitted, it is read from the host (OPNsense has C(/usr/local/sbin/configctl) and
        C(/usr/local/opnsense)).
      - Given, it must be what the host is; otherwise the module fails before changing anything. On OPNsense
        nothing in this collection loads C(/etc/pf.conf), which would replace OPNsense's whole ruleset.
    type: str
    choices: [freebsd, opnsense]
  lock_timeout:
    description:
      - Seconds to wait for another divert.fleet change on the same host (a module run of another play, or
        the boot gate loading the rules) to finish before failing without changing anything.
      - The lock is C(flock) on C(/var/run/divert_fleet.lock), released by the kernel when its holder ends,
        so a run that died leaves no stale lock.
    type: int
    default: 900
"""

    # divert_rules and divert_host: where the main ruleset evaluates the divert anchor.
    PLACEMENT = r"""
options:
  placement:
    description:
      - Where the main pf ruleset evaluates the anchor - the operator's security decision. C(tail) (FreeBSD's
        default) after the operator's own rules, so their block rules still apply. C(head) (OPNsense's default)
        before them, so every packet a divert rule matches is passed to the consumer and then on, whatever the
        other rules say - right only where the consumer is the enforcement point.
      - FreeBSD - where the C(anchor) line goes in C(/etc/pf.conf) when it is added (an existing line stays where
        it is); OPNsense - the placement the plugin hook registers the anchor with.
    type: str
    choices: [head, tail]
  priority:
    description: OPNsense only - the priority the anchor is registered with among other head or tail anchors.
    type: int
    default: 0
"""

    # divert_host, divert_rules and divert_consumers: where the host's divert rules live.
    FIREWALL = r"""
options:
  anchor:
    description: The pf anchor holding the divert rules.
    type: str
    default: divert_fleet
  set:
    description: The ipfw set holding the divert rules.
    type: int
    default: 5
  spare_set:
    description:
      - The ipfw spare set. New rules are loaded into it and swapped with O(set) in one C(set swap); its contents
        are deleted first.
    type: int
    default: 6
"""

    # divert_host and divert_rules: the boot gate (invariant I3).
    GATE = r"""
options:
  boot_gate:
    description:
      - Store the live rules and groups and install the boot gate (invariant I3), which loads the rules at
        boot only once every group is whole.
    type: bool
    default: true
  gate_timeout:
    description: Seconds the boot gate waits for the groups at boot before giving up (the rules stay unloaded).
    type: int
    default: 300
"""
