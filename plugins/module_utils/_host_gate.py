# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot gate (I3): after a reboot, load the stored divert rules once every group is whole.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`). The gate program installed on the host is the on-host library itself,
packed as one standard-library zip application (`gate_program`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import sys
import zipfile

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    DEFAULT_ANCHOR, DEFAULT_GATE_TIMEOUT, GATE_PATH, GATE_RC_SCRIPT, OPNSENSE_SYSHOOK, RULES_FILE, STATE_FILE,
    FreeBSDHost, GroupTimeout, HostError, HostLock, ensure_rc_var, sysrc_values)
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import make_backend
from ansible_collections.divert.fleet.plugins.module_utils._host_rules import apply_rules
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import wait_for_groups

_PACKAGE = "ansible_collections.divert.fleet.plugins.module_utils"
# The parts of the on-host library that the gate runs, each packed into the gate program. All of
# them are imported above, so their sources are at hand wherever this file runs.
GATE_PARTS = ("_grammar", "_host_os", "_host_guard", "_host_parse", "_host_sockets", "_host_firewall", "_host_rules",
              "_host_gate")
_GATE_MAIN = ("from %s._host_gate import gate_main\n"
              "raise SystemExit(gate_main())\n" % _PACKAGE)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same library packs to the same bytes


_SOURCES = {}


def preload():
    """Read every part's source now: a module that hands its change to a child process (see
    `_host_os.Progress`) may outlive the AnsiballZ payload its parts were imported from."""
    for name in GATE_PARTS:
        part_source(name)


def part_source(name):
    """The source of one part, also from inside an AnsiballZ zip (zipimport's get_source)."""
    if name in _SOURCES:
        return _SOURCES[name]
    full_name = "%s.%s" % (_PACKAGE, name)
    module = sys.modules[full_name]
    loader = getattr(module, "__loader__", None)
    source = None
    if loader is not None and hasattr(loader, "get_source"):
        try:
            source = loader.get_source(full_name)
        except Exception:
            source = None
    if isinstance(source, bytes):  # some loaders (Ansible's collection loader) return bytes
        source = source.decode("utf-8")
    if source is None:
        with open(module.__file__, "r") as handle:
            source = handle.read()
    _SOURCES[name] = source
    return source


def gate_program(python=None):
    """The gate program: the on-host library as a zip application (PEP 441) behind a shebang.

    `python` is the interpreter that runs it, by default the one running this code: on a
    managed host that is the interpreter Ansible used there (FreeBSD has
    /usr/local/bin/python3 only with the python3 meta-package). The archive is stored
    uncompressed with fixed timestamps, so the same library always packs to the same bytes
    and an unchanged gate is not rewritten.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        def add(path, text):
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))

        add("__main__.py", _GATE_MAIN)
        package = _PACKAGE.split(".")
        for depth in range(1, len(package) + 1):
            add("/".join(package[:depth]) + "/__init__.py", "")
        for name in GATE_PARTS:
            add("%s/%s.py" % ("/".join(package), name), part_source(name))
    return b"#!" + (python or sys.executable).encode("utf-8") + b"\n" + buffer.getvalue()


def gate_rc_script():
    return """#!/bin/sh
#
# Installed by the divert.fleet Ansible collection: the boot gate (invariant I3).
# After the services started, wait until every divert group is whole, then load the stored
# divert rules; if a group never becomes whole, leave the divert rules empty and log.
#
# PROVIDE: divert_fleet
# REQUIRE: LOGIN
# KEYWORD: nojail

. /etc/rc.subr

name="divert_fleet"
rcvar="divert_fleet_enable"
load_rc_config $name
: ${divert_fleet_enable:="NO"}
: ${divert_fleet_state:="%(state)s"}

start_cmd="${name}_start"
stop_cmd=":"

divert_fleet_start()
{
    # In the background: waiting must not hold up the rest of the boot.
    /usr/sbin/daemon -f -S -T divert-fleet-gate %(gate)s --state "${divert_fleet_state}"
}

run_rc_command "$1"
""" % {"state": STATE_FILE, "gate": GATE_PATH}


def gate_syshook():
    return """#!/bin/sh
# Installed by the divert.fleet Ansible collection: the boot gate on OPNsense (invariant I3).
/usr/sbin/daemon -f -S -T divert-fleet-gate %s --state %s
""" % (GATE_PATH, STATE_FILE)


def gate_state(backend, groups, platform, timeout, rules_present):
    state = {"backend": backend.name, "platform": platform, "timeout": timeout,
             "groups": dict((str(port), count) for port, count in sorted(groups.items())),
             "rules_file": RULES_FILE if rules_present else None}
    if backend.name == "pf":
        state["anchor"] = backend.anchor
    else:
        state["set"] = backend.rule_set
        state["spare_set"] = backend.spare_set
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


# rc.conf variables install_boot_gate reads (run_unit reads them with the consumers' own).
RC_VARS = ("divert_fleet_enable",)


def install_boot_gate(host, backend, rules, groups, platform, timeout, check_mode):
    """Store the wanted rules and groups and install the gate program with exactly one way to run
    it at boot (I3): on FreeBSD the rc.d script, enabled; on OPNsense the rc.syshook.d start hook,
    and no enabled rc.d script (OPNsense's rc.freebsd would run it a second time). Returns what
    changed."""
    groups = _host_guard.groups(groups or {})
    changed = []
    files = [
        (RULES_FILE, rules, 0o600),
        (STATE_FILE, gate_state(backend, groups, platform, timeout, bool(rules.strip())), 0o600),
        (GATE_PATH, gate_program(), 0o755),
    ]
    files.append((OPNSENSE_SYSHOOK, gate_syshook(), 0o755) if platform == "opnsense" else
                 (GATE_RC_SCRIPT, gate_rc_script(), 0o755))
    for path, content, mode in files:
        if host.ensure_file(path, content, mode, check_mode):
            changed.append(path)
    if platform == "opnsense":
        # A gate installed before this one knew OPNsense may have left the rc.d way behind.
        if host.remove_file(GATE_RC_SCRIPT, check_mode):
            changed.append("removed %s" % GATE_RC_SCRIPT)
        if "divert_fleet_enable" in sysrc_values(host, ["divert_fleet_enable"]):
            if not check_mode:
                host.run_ok(["sysrc", "-x", "divert_fleet_enable"], "removing divert_fleet_enable from rc.conf")
            changed.append("removed divert_fleet_enable")
    elif ensure_rc_var(host, "divert_fleet_enable", "YES", check_mode):
        changed.append("divert_fleet_enable=YES")
    return changed


def deploy_rules(host, backend, rules, groups, state="present", platform="freebsd", check_mode=False,
                 boot_gate=True, gate_timeout=DEFAULT_GATE_TIMEOUT, placement=None, priority=0):
    """apply_rules, then the boot gate's stored copy of the rules and groups (I3)."""
    groups = _host_guard.groups(groups or {})
    result = apply_rules(host, backend, rules, groups, state=state, platform=platform, check_mode=check_mode,
                         placement=placement, priority=priority)
    if boot_gate:
        gate_changes = install_boot_gate(host, backend, rules if state == "present" else "", groups,
                                         platform, gate_timeout, check_mode)
        result["boot_gate"] = gate_changes
        result["changed"] = result["changed"] or bool(gate_changes)
    return result


def gate_main(argv=None, host=None):
    """Boot gate: wait for every stored group to be whole, then load the stored rules.

    If the groups never become whole, the divert rules stay empty (anchors and ipfw rules are
    empty after a reboot, so nothing diverts) and the failure is logged. Exit 0 when the
    rules are loaded, 1 otherwise.
    """
    import argparse
    parser = argparse.ArgumentParser(prog="divert-fleet-gate",
                                     description="Load the divert.fleet rules once every divert group is whole.")
    parser.add_argument("--state", default=STATE_FILE)
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)
    host = host or FreeBSDHost()
    log = _gate_logger()
    try:
        stored = _stored(host, args.state)
        if stored is None:
            log("no state file %s: nothing to load" % args.state)
            return 0
        backend, groups, rules, state = stored
        if not rules.strip():
            log("no divert rules stored: nothing to load")
            return 0
        timeout = args.timeout if args.timeout is not None else state.get("timeout", DEFAULT_GATE_TIMEOUT)
        ports = backend.divert_ports(rules)
        try:
            wait_for_groups(host, dict((p, groups.get(p, 0)) for p in ports), timeout)
        except GroupTimeout as exc:
            backend.flush()
            log("%s; divert rules left empty" % exc.message)
            return 1
        # A rollout may have run while the groups came up: load what is stored now, under the
        # host's lock; apply_rules checks again that every group the rules divert to is whole (I1).
        with HostLock(host, "divert-fleet-gate"):
            backend, groups, rules, state = _stored(host, args.state)
            apply_rules(host, backend, rules, groups, platform=state.get("platform", "freebsd"),
                        manage_main_ruleset=False)
        log("divert rules loaded: groups whole on port(s) %s" % ", ".join(map(str, sorted(backend.divert_ports(rules)))))
        return 0
    except (HostError, ValueError, KeyError, TypeError) as exc:
        log(getattr(exc, "message", None) or "state file %s is not divert.fleet's: %s" % (args.state, exc))
        return 1


def _stored(host, path):
    """(backend, groups, rules, state) as the last rollout stored them, or None without a state file."""
    text = host.read_file(path)
    if text is None:
        return None
    state = json.loads(text)
    backend = make_backend(host, state["backend"], state.get("anchor", DEFAULT_ANCHOR),
                           state.get("set", 5), state.get("spare_set", 6))
    groups = _host_guard.groups(state.get("groups", {}))
    rules = (host.read_file(state["rules_file"]) if state.get("rules_file") else "") or ""
    return backend, groups, rules, state


def _gate_logger():
    try:
        import syslog
        syslog.openlog("divert-fleet-gate")

        def log(message):
            syslog.syslog(syslog.LOG_NOTICE, message)
            sys.stderr.write(message + "\n")
        return log
    except ImportError:
        return lambda message: sys.stderr.write(message + "\n")
