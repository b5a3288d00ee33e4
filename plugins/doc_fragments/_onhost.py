# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes shared by the on-host modules. Private to the divert.fleet collection."""

from __future__ import annotations


class ModuleDocFragment:
    # divert.fleet.divert_sockets, divert_rules and divert_consumers: all run on FreeBSD or OPNsense
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
