# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's divert change as one unit: consumers and rules in the order the invariants fix.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).

The unit (`run_unit`), all decided before anything changes:
1. every consumer is classified (`_host_consumers.change_needed`): nothing, start (no group
   yet), reload (no rebind), switch (a new group on the other of port/standby_port, I5),
   in-place restart (only with `allow_disruption`: I2 with drain), or removal. A new consumer
   whose port still serves a consumer that left the spec starts on its standby port (the old
   group drains as a switched-from one), or, only with `allow_disruption`, takes the port over
   in place: the port's rules withdrawn, the old group drained and stopped, the new one started;
2. new groups are configured and started beside the serving ones, and the kernel must show
   each whole (I1); if one never is, the new instances are stopped and their settings
   removed: the host runs exactly what it ran;
3. reloads (SIGUSR2 and the like) for reload-only changes; the group must still be whole;
4. in-place restarts the play allowed: their rules withdrawn in one transaction, their pf
   states drained (or `drain_timeout`), restarted, whole again;
5. the rules, with every consumer's live port, in one transaction (I4); a failed load leaves
   the previous rules in force and the new groups are stopped;
6. the old groups (switched from, removed) drain - no pf state created by a rule diverting to
   their port is left, or `drain_timeout` passed - and only then stop (I2); their settings and
   the collection's files for them go;
7. the record (live ports, fingerprints) and the boot gate's copy.
A failure reports what was done and what the host runs now.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import time

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import (
    DEFAULT_DRAIN_TIMEOUT, change_needed, ensure_ipdivert, fingerprint, policy, read_record, write_record)
from ansible_collections.divert.fleet.plugins.module_utils._host_drivers import STANDBY_SUFFIX, driver_for
from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError, sysrc_values, text_diff
from ansible_collections.divert.fleet.plugins.module_utils._host_parse import (
    parse_pf_states, rewrite_divert_ports)
from ansible_collections.divert.fleet.plugins.module_utils._host_rules import apply_rules
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import (
    _json_table, _try_read_divert_sockets, incomplete_groups, read_divert_sockets, wait_for_groups)


def sha256(content):
    return hashlib.sha256(content if isinstance(content, bytes) else content.encode("utf-8")).hexdigest()


class UnitFailure(HostError):
    """A change that failed after it began: the message says what the host runs now."""


class Consumer:
    """One consumer of the spec on this host: its driver, its record, what it wants."""

    def __init__(self, host, spec, platform, record, rc_conf, reference_program=None):
        self.spec = spec
        self.name = spec["name"]
        self.driver = driver_for(host, spec, platform)
        self.record = record
        self.port = spec["port"]
        self.standby_port = spec.get("standby_port")
        self.reference_program = reference_program
        watch = spec.get("watch") or {}
        self.watched = fingerprint(host, list(self.driver.program(spec)) + list(watch.get("restart") or ()))
        self.reload_fp = fingerprint(host, watch.get("reload") or ())
        self.live_port = record.get("live_port") if record else None
        self.rc_conf = rc_conf
        self.action = None
        self.reasons = []
        self.bound_before = 0  # sockets the kernel showed on the serving port before the change
        self.target = None  # the port the consumer serves on after the change
        self.takes_over = None  # the removed consumer whose live port this new one takes

    def restart_fp(self, port):
        """The program and watch.restart files as they are, and the files the collection installs
        for the instance on `port` as they will be."""
        prints = dict(self.watched)
        for path, content in self.driver.expected_files(self.spec, port, self.reference_program).items():
            prints[path] = sha256(content)
        return prints

    def wanted(self, port):
        return {"driver": self.driver.name, "live_port": port, "sockets": self.spec["sockets"],
                "settings": self.driver.settings(self.spec, port), "restart_fp": self.restart_fp(port),
                "reload_fp": self.reload_fp}

    def live_service(self):
        """The instance serving now, as the record names it (the spec's port may have moved since)."""
        return (self.record or {}).get("service") or self.driver.instance_service(self.spec, self.live_port)

    def old_spec(self):
        """The spec as it was for the serving instance: the driver's instance_service(old_spec(),
        live_port) is live_service(), so its stop, settings and files are that instance's."""
        service, live = self.live_service(), self.live_port
        if self.driver.standby and service.endswith(STANDBY_SUFFIX) and \
                self.driver.instance_service(self.spec, live) != service:
            other = live + 1 if live < 65535 else live - 1
            return dict(self.spec, service=service[:-len(STANDBY_SUFFIX)], port=other, standby_port=live)
        if self.driver.instance_service(self.spec, live) == service:
            return self.spec
        return dict(self.spec, service=service, port=live, standby_port=None)

    def beside(self):
        """Ports of the spec where the next group can bind beside the serving one: not the live
        port, and an instance other than the live one."""
        live = self.live_service()
        return [port for port in (self.port, self.standby_port)
                if port and port != self.live_port and self.driver.instance_service(self.spec, port) != live]

    def entry(self, port):
        wanted = self.wanted(port)
        return dict(wanted, service=self.driver.instance_service(self.spec, port),
                    managed_vars=sorted(wanted["settings"]) if self.driver.name != "opnsense-ids" else [])


def _removed_spec(name, entry):
    """A spec-shaped consumer for a record whose consumer left the spec (to stop and clean it)."""
    return {"name": name, "port": entry.get("live_port"), "sockets": entry.get("sockets") or 1,
            "service": entry.get("service") or name, "driver": entry.get("driver") or "rc", "rc_vars": {}}


def _stop_instance(spec, driver, port, managed):
    """Stop one instance and remove the settings and files the collection made for it. Idempotent:
    a run that failed after stopping it (its record still names it) leaves nothing that fails the
    next run - a stop that fails of an instance no longer running, and variables already gone, are
    what was wanted."""
    try:
        driver.stop(spec, port)
    except HostError:
        if driver.running(spec, port):
            raise
    managed = sorted(managed or [])
    if managed:
        managed = sorted(driver.current(spec, port, managed))
    driver.unconfigure(spec, port, managed, False)
    driver.uninstall(spec, port, False)
    return "stopped %s on port %s" % (driver.instance_service(spec, port), port)


def _stop_removed(host, platform, name, entry):
    spec = _removed_spec(name, entry)
    return _stop_instance(spec, driver_for(host, spec, platform), entry.get("live_port"),
                          entry.get("managed_vars")) + " (consumer removed from the spec)"


def run_unit(host, backend, consumers, rules, groups, platform, check_mode=False, allow_disruption=False,
             reference_program=None, ready_timeout=None, progress=None, placement=None, priority=0,
             rc_also=()):
    """Bring the host to the spec's consumers and rules as one unit; see the module docstring.

    `rules` is the host's rendered text (spec ports), `groups` {spec port: sockets}. Returns
    the result: changed, actions, consumers (per consumer), live_ports, rules, sockets, diff.
    With `rules=None` only the consumers are handled (divert.fleet.divert_consumers): no group
    can be switched then, and a removed consumer's rules are withdrawn before it stops.
    `rc_also`: rc.conf variables the caller reads later in the run (FreeBSD), read in the same
    `sysrc -e` as the consumers' own.
    """
    _host_guard.consumers(consumers)
    groups = _host_guard.groups(groups or {})
    manage_rules = rules is not None
    if manage_rules:
        _host_guard.rules_text(backend.name, rules)
    log = progress or (lambda message: None)
    actions = []
    result = {"changed": False, "actions": actions, "warnings": [], "consumers": []}

    # --- read the host once -----------------------------------------------------------------------
    table = _try_read_divert_sockets(host)
    record = read_record(host)
    views = []
    names = ["kld_list"] + list(rc_also)
    for spec in consumers:
        for port in (spec["port"], spec.get("standby_port")):
            if port:
                names += sorted(driver_for(host, spec, platform).settings(spec, port))
    rc_conf = sysrc_values(host, sorted(set(names))) if platform != "opnsense" else {}
    for spec in consumers:
        views.append(Consumer(host, spec, platform, record.get(spec["name"]), rc_conf,
                              "" if reference_program is None else reference_program))
    removed = dict((name, entry) for name, entry in record.items() if name not in set(c["name"] for c in consumers))
    if reference_program is None and any(view.driver.name == "reflector" for view in views):
        raise HostError("reference consumers need reference_program (the divert-reflector source); nothing was "
                        "changed")

    # A consumer renamed in the spec (no record under its name, a removed one with its driver and
    # service serving on its port or standby port) is the same running group under a new name.
    for view in views:
        if view.record is not None:
            continue
        for name, entry in sorted(removed.items()):
            live = entry.get("live_port")
            if live in (view.port, view.standby_port) and entry.get("driver") == view.driver.name and \
                    entry.get("service") == view.driver.instance_service(view.spec, live):
                view.record, view.live_port = entry, live
                del removed[name]
                actions.append("consumer %s is %s renamed: its group on port %d is the same" % (
                    view.name, name, live))
                break

    # --- decide, before anything changes ---------------------------------------------------------------
    refusals = []
    held = dict((entry.get("live_port"), name) for name, entry in sorted(removed.items()) if entry.get("live_port"))
    for view in views:
        _classify(host, backend, view, table, allow_disruption, refusals, manage_rules, held)
    if refusals:
        raise HostError("refusing the change on %s before touching it: %s. Give the consumer a standby_port "
                        "(blue/green: no flow remaps, nothing goes uninspected) or run with "
                        "divert_fleet_allow_disruption=true" % (host.name, "; ".join(refusals)),
                        refused=refusals)

    ipdivert = ensure_ipdivert(host, platform, check_mode, kld_list=rc_conf.get("kld_list", ""),
                               sockets_bound=any(row.get("bound") for row in table.values()))
    actions += ipdivert

    # Settings diff (rc.conf or OPNsense's model) and installed files, as check mode shows them.
    before_lines, after_lines = [], []
    for view in views:
        port = view.target
        wanted = view.driver.settings(view.spec, port)
        current = view.driver.current(view.spec, port, sorted(wanted), rc_conf)
        for var in sorted(wanted):
            old = current.get(var)
            before_lines.append("%s=%s" % (var, '"%s"' % old if old is not None else "(unset)"))
            after_lines.append('%s="%s"' % (var, wanted[var]))
        view.current = current

    started = []  # (view, port) instances started by this change, stopped again if it fails
    try:
        # --- 2. new groups beside the serving ones ----------------------------------------------------------
        for view in views:
            if view.action not in ("start", "switch"):
                continue
            port = view.target
            files = view.driver.install(view.spec, port, check_mode, reference_program)
            changes = view.driver.configure(view.spec, port, view.driver.settings(view.spec, port), view.current,
                                            check_mode)
            if files or changes:
                actions.append("configured %s on port %d%s" % (
                    view.driver.instance_service(view.spec, port), port,
                    " (%s)" % ", ".join(sorted(changes)) if changes else ""))
            if check_mode:
                actions.append("would %s %s on port %d" % (view.action, view.name, port))
                continue
            view.driver.start(view.spec, port)
            started.append((view, port))
            service = view.driver.instance_service(view.spec, port)
            actions.append("started %s on port %d (%s)" % (service, port, ", ".join(view.reasons) or "new"))
        # A port's group is every consumer that serves on it after the change (one port may hold
        # the sockets of several consumers): the kernel must show their sum.
        new_ports = dict((port, _group_size(views, port)) for port in set(p for _v, p in started))
        if new_ports:
            log("waiting for the kernel to show %s bound" % ", ".join(
                "%d socket(s) on port %d" % (n, p) for p, n in sorted(new_ports.items())))
            table = _wait(host, views, new_ports, ready_timeout, log)

        # --- 3. reloads: no rebind ----------------------------------------------------------------------
        for view in views:
            if view.action != "reload":
                continue
            if not check_mode:
                view.driver.reload(view.old_spec(), view.live_port)
            method = view.driver.reload_method(view.spec) or "rc"
            actions.append("reloaded %s (%s): %s" % (view.name, method, ", ".join(view.reasons)))
        if any(v.action == "reload" for v in views) and not check_mode:
            table = read_divert_sockets(host)[0]
            broken = incomplete_groups(table, dict((v.live_port, v.spec["sockets"]) for v in views
                                                   if v.action == "reload"))
            if broken:
                raise UnitFailure("a reload rebound a group on %s: %s" % (host.name, ", ".join(
                    "port %d: %d declared, %d bound" % item for item in broken)))

        # --- 4. in-place restarts the play allowed (I2 with drain) ---------------------------------------------
        for view in views:
            if view.action != "restart":
                continue
            old_port, port = view.live_port, view.target
            if backend is not None:
                before = backend.canonical(backend.loaded_text())
                withdrawn = backend.withdraw_ports([old_port], check_mode)
                actions.append("withdrew %d rule(s) diverting to port %d before restarting %s in place" % (
                    len(withdrawn), old_port, view.name))
            if not check_mode:
                if backend is not None and view.bound_before:  # a dead group has nothing to drain
                    actions.append(drain(host, backend, [old_port], _diverting_to(before, old_port), time.time(),
                                         _drain_timeout(view), log)["text"])
                view.driver.install(view.spec, port, False, reference_program)
                view.driver.configure(view.spec, port, view.driver.settings(view.spec, port), view.current, False)
                if view.live_port is not None and view.driver.instance_service(view.spec, port) != view.live_service():
                    # the spec's port now names another instance than the serving one (a port move)
                    actions.append(_stop_instance(view.old_spec(), view.driver, old_port,
                                                  (view.record or {}).get("managed_vars")))
                    view.driver.start(view.spec, port)
                else:
                    view.driver.restart(view.spec, port)
                started.append((view, port))
                table = _wait(host, views, {port: _group_size(views, port)}, ready_timeout, log)
            actions.append("restarted %s in place on port %d (%s)" % (view.name, port, ", ".join(view.reasons)))

        # --- 4b. ports taken over in place from removed consumers (allowed disruption) ------------------------
        for view in views:
            if view.action != "takeover":
                continue
            port, old_name = view.target, view.takes_over
            old_entry = removed.pop(old_name)  # stopped here, not after the rules
            if backend is not None:
                before = backend.canonical(backend.loaded_text())
                withdrawn = backend.withdraw_ports([port], check_mode)
                actions.append("withdrew %d rule(s) diverting to port %d before %s takes it over from %s" % (
                    len(withdrawn), port, view.name, old_name))
            if check_mode:
                actions.append("would drain port %d, stop %s, then start %s on it" % (port, old_name, view.name))
                continue
            if backend is not None:
                actions.append(drain(host, backend, [port], _diverting_to(before, port), time.time(),
                                     _drain_timeout(view), log)["text"])
            actions.append(_stop_removed(host, platform, old_name, old_entry))
            view.driver.install(view.spec, port, False, reference_program)
            view.driver.configure(view.spec, port, view.driver.settings(view.spec, port), view.current, False)
            view.driver.start(view.spec, port)
            started.append((view, port))
            table = _wait(host, views, {port: _group_size(views, port)}, ready_timeout, log)
            actions.append("started %s on port %d, taken over from %s (removed from the spec)" % (
                view.driver.instance_service(view.spec, port), port, old_name))

        # --- 5. the rules, with the live ports, in one transaction ------------------------------------------
        mapping = dict((view.port, view.target) for view in views if view.target != view.port)
        live_groups = {}
        for view in views:
            live_groups[view.target] = live_groups.get(view.target, 0) + view.spec["sockets"]
        live_rules, rules_result = None, {"changed": False, "diff": None, "rules": None}
        # the anchor as it is before the switch: its rule numbers name the old groups' pf states
        drains = removed or any(view.action == "switch" and view.bound_before for view in views)
        loaded_before = backend.canonical(backend.loaded_text()) if (backend and drains) else []
        if manage_rules:
            live_rules = rewrite_divert_ports(rules, mapping)
            rules_result = apply_rules(host, backend, live_rules, live_groups, platform=platform,
                                       check_mode=check_mode, placement=placement, priority=priority)
            actions += rules_result["actions"]
            result["warnings"] += rules_result["warnings"]
            if rules_result.get("sockets"):
                table = dict((int(p), e) for p, e in rules_result["sockets"].items())
        elif backend is not None and removed:
            gone = sorted(set(entry.get("live_port") for entry in removed.values() if entry.get("live_port")))
            withdrawn = backend.withdraw_ports(gone, check_mode)
            if withdrawn:
                actions.append("withdrew %d rule(s) diverting to port(s) %s of removed consumers" % (
                    len(withdrawn), ", ".join(map(str, gone))))
        result["rules"] = rules_result["rules"]
        # taken once the new rules are in force: a state the old rules created while the
        # transaction ran is older than this, so the drain below waits for it too
        switched_at = time.time()
    except HostError as exc:
        _roll_back(host, started, views, check_mode)
        raise UnitFailure(
            "%s; %s" % (exc.message, _now_running(host, started, views)),
            done=actions, **dict((k, v) for k, v in exc.details.items() if k != "done"))

    # --- 6. old groups drain, then stop -------------------------------------------------------------------
    old = [(view.old_spec(), view.driver, view.live_port, view) for view in views
           if view.action == "switch" and view.live_port is not None]
    for name, entry in sorted(removed.items()):
        spec = _removed_spec(name, entry)
        try:
            old.append((spec, driver_for(host, spec, platform), entry.get("live_port"), None))
        except HostError as exc:
            result["warnings"].append("consumer %s left the spec but cannot be stopped: %s" % (name, exc.message))
    try:
        for spec, driver, port, view in old:
            if check_mode:
                actions.append("would drain port %s, then stop %s" % (port, driver.instance_service(spec, port)))
                continue
            if backend is not None and (view is None or view.bound_before):
                drained = drain(host, backend, [port], _diverting_to(loaded_before, port), switched_at,
                                _drain_timeout(view), log)
                actions.append(drained["text"])
                if drained["left"]:
                    result["warnings"].append(drained["text"])
            if view is None:
                actions.append(_stop_removed(host, platform, spec["name"], record[spec["name"]]))
            else:
                actions.append(_stop_instance(spec, driver, port, (view.record or {}).get("managed_vars")))
    except HostError as exc:
        raise UnitFailure(
            "%s; the new rules are in force with the new groups (%s), but an old group may still run" % (
                exc.message, ", ".join("%s on port %d" % (v.name, v.target) for v in views)),
            done=actions, **dict((k, v) for k, v in exc.details.items() if k != "done"))

    # --- 7. the record ------------------------------------------------------------------------------------
    records = {}
    for view in views:
        entry = view.entry(view.target)
        if view.action is None and view.record:
            entry = dict(view.record, restart_fp=view.restart_fp(view.target), reload_fp=view.reload_fp,
                         service=view.driver.instance_service(view.spec, view.target))
            entry.pop("migrated", None)
        elif view.action == "reload":
            entry = dict(view.record, reload_fp=view.reload_fp)
            entry.pop("migrated", None)
        records[view.name] = entry
        result["consumers"].append({
            "name": view.name, "driver": view.driver.name, "service": view.driver.instance_service(view.spec,
                                                                                                   view.target),
            "port": view.port, "standby_port": view.standby_port, "live_port": view.target,
            "sockets": view.spec["sockets"], "action": view.action, "reasons": view.reasons,
            "changed": view.action is not None,
            "bound": table.get(view.target, {}).get("bound", 0),
            "policy": policy(view.driver.name, view.driver.reload_method(view.spec), view.standby_port,
                             view.spec.get("watch"))})
    record_changed = write_record(host, records, check_mode)
    result["changed"] = bool(actions) or record_changed or rules_result["changed"]
    result["live_ports"] = dict((view.name, view.target) for view in views)
    result["live_rules"] = live_rules
    result["live_groups"] = dict((str(p), n) for p, n in sorted(live_groups.items()))
    result["sockets"] = _json_table(table)
    result["diff"] = {
        "settings": text_diff("\n".join(before_lines) + "\n", "\n".join(after_lines) + "\n",
                              "consumer settings (now)", "consumer settings (wanted)"),
        "rules": rules_result["diff"],
    }
    return result


def _classify(host, backend, view, table, allow_disruption, refusals, manage_rules=True, held=None):
    """Set view.action, view.target and view.reasons (see the module docstring). `held`: live port
    to the name of the consumer that left the spec and still serves on it."""
    holder = (held or {}).get(view.port) if view.record is None else None
    if holder is not None:
        # What runs on the port is the removed consumer's group, not this one adopted.
        view.takes_over = holder
        if view.driver.standby and view.standby_port and manage_rules and view.standby_port not in held:
            view.action, view.target = "start", view.standby_port
            view.reasons = ["new; port %d still serves %s, which left the spec and drains once the rules switch"
                            % (view.port, holder)]
            return
        view.target = view.port
        if allow_disruption:
            view.action, view.reasons = "takeover", ["new; takes port %d over from %s, which left the spec" % (
                view.port, holder)]
            return
        states = None
        if backend is not None and backend.name == "pf":
            states = _count_states(host, backend, _diverting_to(backend.canonical(backend.loaded_text()), view.port))
        refusals.append("consumer %s takes port %d over from consumer %s, which left the spec: without a standby "
                        "port, %s onto the new group and the port's traffic passes undiverted or is dropped while "
                        "the old group drains and the new one binds (up to %d s)" % (
                            view.name, view.port, holder,
                            "%d live flow(s) remap" % states if states is not None else "its live flows remap",
                            _drain_timeout(view) + int(view.spec.get("ready_timeout") or 60)))
        return
    if view.record is None or view.live_port is None:
        bound = table.get(view.port, {}).get("bound", 0)
        running = bound > 0 or view.driver.running(view.spec, view.port)
        view.target = view.port
        if not running:
            view.action, view.reasons = "start", ["not running"]
            return
        # Running from before divert.fleet recorded it (adopted): what runs is what the host shows.
        view.live_port = view.port
        names = sorted(view.driver.settings(view.spec, view.port))
        view.record = dict(view.wanted(view.port), sockets=bound,
                           settings=view.driver.current(view.spec, view.port, names, view.rc_conf))
    bound = table.get(view.live_port, {}).get("bound", 0)
    view.bound_before = bound
    wanted_live = view.live_port if view.live_port in (view.port, view.standby_port) else view.port
    need, reasons = change_needed(view.record or {}, view.wanted(wanted_live))
    if need is None and bound != view.spec["sockets"]:
        need, reasons = "repair", ["the kernel shows %d of %d sockets bound on port %d" % (
            bound, view.spec["sockets"], view.live_port)]
    view.reasons = reasons
    if need is None:
        view.target = view.live_port
        return
    if need == "reload":
        if view.driver.reload_method(view.spec):
            view.action, view.target = "reload", view.live_port
            return
        need = "restart"
        view.reasons = reasons + ["(the consumer declares no reload)"]
    if need == "repair":
        # The group is not whole: I1 wants its rules withdrawn before it is rebuilt in place.
        beside = view.beside() if view.driver.standby and manage_rules else []
        if beside:
            view.action, view.target = "switch", beside[0]
        else:
            view.action, view.target = "restart", view.live_port
        return
    # the next group binds beside the serving one: another port and another instance (after a port
    # move the spec's ports may name the serving instance's, which the record knows)
    beside = view.beside() if view.driver.standby and manage_rules else []
    target = beside[0] if beside else None
    if target is not None:
        view.action, view.target = "switch", target
        return
    if allow_disruption:
        view.action, view.target = "restart", view.port
        return
    states = None
    if backend.name == "pf":
        states = _count_states(host, backend, _diverting_to(backend.canonical(backend.loaded_text()), view.live_port))
    refusals.append("consumer %s on port %d needs a restart (%s): without a standby port, %s and its traffic "
                    "passes undiverted or is dropped for up to %d s while it binds again" % (
                        view.name, view.live_port, ", ".join(reasons),
                        "%d live flow(s) remap" % states if states is not None else "its live flows remap",
                        int(view.spec.get("ready_timeout") or 60)))


def _group_size(views, port):
    return sum(view.spec["sockets"] for view in views if view.target == port)


def _drain_timeout(view):
    return int((view.spec.get("drain_timeout") if view else None) or DEFAULT_DRAIN_TIMEOUT)


def _wait(host, views, expected, ready_timeout, log):
    timeouts = {}
    for view in views:
        if view.target in expected:
            timeouts[view.target] = max(timeouts.get(view.target, 0),
                                        int(ready_timeout or view.spec.get("ready_timeout") or 60))
    table, _source, _polls = wait_for_groups(host, expected, timeouts, progress=log)
    return table


def _roll_back(host, started, views, check_mode):
    """Stop the instances this change started and remove the settings it wrote for them."""
    if check_mode:
        return
    for view, port in reversed(started):
        if view.action not in ("start", "switch", "takeover"):
            continue
        try:
            view.driver.stop(view.spec, port)
            if view.action in ("switch", "takeover"):
                view.driver.unconfigure(view.spec, port, sorted(view.driver.settings(view.spec, port)), False)
                view.driver.uninstall(view.spec, port, False)
        except HostError:
            pass


def _now_running(host, started, views):
    serving = ", ".join("%s on port %d" % (v.name, v.live_port) for v in views if v.live_port) or "nothing"
    new_groups = ("start", "switch", "takeover")
    stopped = ", ".join("%s on port %d" % (v.name, p) for v, p in started if v.action in new_groups)
    taken = [v for v, _p in started if v.action == "takeover"]
    if taken:
        return "port(s) %s were freed for a takeover the play allowed (%s stopped, their rules withdrawn)%s" % (
            ", ".join(str(v.target) for v in taken), ", ".join(v.takes_over for v in taken),
            "; the new group(s) %s were stopped" % stopped if stopped else "")
    return "the host runs what it ran before: %s, with its previous rules in force%s" % (
        serving, "; the new group(s) %s were stopped" % stopped if stopped else "")


def _diverting_to(canonical_rules, port):
    """Indexes (pf rule numbers in the anchor) of the canonical rules that divert to `port`."""
    return [index for index, rule in enumerate(canonical_rules)
            if rule.endswith("divert-to %d" % port) or " divert %d " % port in " %s " % rule]


def drain(host, backend, ports, old_rules, since, timeout, log, interval=1.0):
    """Wait until no pf state that a rule diverting to `ports` created before `since` is left.

    pf states keep the rule that created them across reloads (freebsd-facts.md, pf), so after
    the switch the established flows still divert to the old port. `pfctl -ss -vv` prints with
    each state `anchor N, rule M` (pf_print_state.c): the main ruleset's anchor rule the state
    was created through (absent for a rule of the main ruleset itself) and the creating rule's
    number in that anchor, both as the kernel exports them from the state's rule pointers
    (pf_state_export), so the numbers of the rulesets as they were when the state was created.
    `old_rules` are the numbers, in the anchor as it was loaded before the switch, of the rules
    that diverted to `ports`; states younger than the switch were created by the new rules.
    States of the main ruleset are never ours; the anchor's own number is not compared, because
    a main ruleset loaded since the state was created (OPNsense regenerates it whenever its
    configuration is applied) may have moved it: a state of another anchor with the same rule
    number makes the drain wait longer, never end too early. ipfw keeps no state for a divert
    rule: its flows follow the swap at once, so only packets in flight are waited for.
    """
    start = host.clock()
    if backend.name != "pf":
        host.sleep(min(1.0, timeout))
        return {"left": 0, "seconds": 0, "text": "ipfw: flows follow the swap at once (no state); port(s) %s "
                "drained of packets in flight" % ", ".join(map(str, ports))}
    last_log = None
    while True:
        left = _count_states(host, backend, old_rules, since)
        waited = host.clock() - start
        if not left:
            return {"left": 0, "seconds": int(waited), "text": "port(s) %s drained in %d s: no pf state of theirs "
                    "is left" % (", ".join(map(str, ports)), int(waited))}
        if waited >= timeout:
            return {"left": left, "seconds": int(waited), "text": "drain_timeout (%d s) passed with %d pf state(s) "
                    "still diverting to port(s) %s; stopping the old group drops their packets until they end" % (
                        timeout, left, ", ".join(map(str, ports)))}
        if last_log is None or waited - last_log >= 3:
            log("draining port(s) %s: %d pf state(s) left, %d s of %d" % (
                ", ".join(map(str, ports)), left, int(waited), timeout))
            last_log = waited
        host.sleep(interval)


def _count_states(host, backend, old_rules, since=None):
    """pf states created inside an anchor by the rules numbered `old_rules` (before `since`, the
    Unix time of the switch, when given); None when pfctl cannot say. See `drain`."""
    rc, out, _err = host.run(["pfctl", "-ss", "-vv"])
    if rc != 0:
        return None
    old = set(old_rules)
    elapsed = time.time() - since if since is not None else None
    count = 0
    for state in parse_pf_states(out):
        if state["rule"] is None or state["rule"] not in old:
            continue
        if state["anchor"] is None:
            continue  # created by a rule of the main ruleset, not of an anchor
        if elapsed is not None and state["age"] is not None and state["age"] + 1 < elapsed:
            continue  # created after the switch, by the new rules
        count += 1
    return count


def failure_changed(exc):
    return bool(getattr(exc, "details", {}).get("done"))
