# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Applying a host's divert rules in one transaction (I1, I4).

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    HostError, ensure_rc_var, text_diff, unified)
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import (
    DEFAULT_PLACEMENT, PLACEMENTS, ensure_freebsd_anchor_reference, ensure_opnsense_anchor_reference,
    ensure_pf_enabled)
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import (
    _json_table, describe_incomplete, incomplete_groups, read_divert_sockets)


# rc.conf variables apply_rules reads on a FreeBSD pf host (run_unit reads them with the consumers' own).
RC_VARS = ("pf_enable",)


def apply_rules(host, backend, rules, groups, state="present", platform="freebsd", check_mode=False,
                manage_main_ruleset=True, placement=None, priority=0):
    """Bring the host's divert rules to `rules` (or withdraw them) in one transaction.

    Order: syntax check (nothing changes on failure) -> compare with what is loaded -> if
    different, check the kernel's divert sockets against `groups` and refuse if any port the
    rules divert to is not whole (I1, defence in depth) -> load (pf anchor or ipfw spare set
    and swap, I4) -> read back and compare. Then the main ruleset's anchor reference and pf
    enabled. The boot gate's stored copy (I3) is `_host_gate.deploy_rules`'s part.
    """
    groups = _host_guard.groups(groups or {})
    _host_guard.rules_text(backend.name, rules or "")
    result = {"changed": False, "backend": backend.name, "actions": [], "warnings": []}
    loaded_text = backend.loaded_text()
    before = backend.canonical(loaded_text)
    if state == "absent":
        wanted = []
        if before:
            if not check_mode:
                backend.flush()
            result["actions"].append("withdrew %d rule(s)" % len(before))
    else:
        wanted = backend.canonical(rules)
        if wanted != before:
            result["actions"] += backend.ensure_module(check_mode)
            # Only text that would be loaded needs the host's own syntax check; rules equal to the
            # loaded ones were accepted by the kernel already.
            backend.check(rules)
            ports = backend.divert_ports(rules)
            unknown = sorted(p for p in ports if p not in groups)
            if unknown:
                raise HostError("rules divert to port(s) %s that no declared group binds on %s (I1)"
                                % (", ".join(map(str, unknown)), host.name), ports=unknown)
            table, source = read_divert_sockets(host)
            missing = incomplete_groups(table, dict((p, groups[p]) for p in ports))
            result["sockets"] = _json_table(table)
            if missing:
                message = ("refusing to load divert rules: %s; the previous rules stay in force (I1)"
                           % describe_incomplete(host.name, missing))
                if not check_mode:
                    raise HostError(message, host=host.name,
                                    incomplete=[{"port": p, "expected": e, "bound": b} for p, e, b in missing])
                result["warnings"].append("check mode: " + message)
            if not check_mode:
                backend.load(rules)
                after = backend.canonical(backend.loaded_text())
                if after != wanted:
                    raise HostError("rules read back from the kernel differ from the wanted rules on %s:\n%s"
                                    % (host.name, unified(wanted, after)), loaded=after, wanted=wanted)
            result["actions"].append("loaded %d rule(s)" % len(wanted))
    if wanted != before:
        result["changed"] = True
    shown_before, shown_after = backend.shown(loaded_text, rules if state != "absent" else "")
    result["diff"] = text_diff("\n".join(shown_before) + ("\n" if shown_before else ""),
                               "\n".join(shown_after) + ("\n" if shown_after else ""),
                               "%s rules loaded" % backend.name, "%s rules wanted" % backend.name)
    result["rules"] = wanted
    if backend.name == "pf" and manage_main_ruleset and state == "present":
        placement = placement or DEFAULT_PLACEMENT[platform]
        if placement not in PLACEMENTS:
            raise HostError("anchor placement %r is not head or tail; nothing was changed" % placement)
        if platform == "opnsense":
            main_changes = ensure_opnsense_anchor_reference(host, backend.anchor, check_mode, placement,
                                                            int(priority or 0))
        else:
            main_changes = ensure_freebsd_anchor_reference(host, backend.anchor, check_mode, placement,
                                                           module_loaded=backend.module_loaded)
            if ensure_rc_var(host, "pf_enable", "YES", check_mode):
                main_changes.append("pf_enable=YES in rc.conf")
        if ensure_pf_enabled(host, check_mode, module_loaded=backend.module_loaded):
            main_changes.append("pfctl -e")
        result["actions"] += main_changes
        result["changed"] = result["changed"] or bool(main_changes)
    return result
