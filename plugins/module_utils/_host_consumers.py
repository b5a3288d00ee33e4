# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consumers on a host: ipdivert, rc.conf variables, services, the reference consumer (I1, I2).

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import sys

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    CONSUMERS_FILE, RC_D, REFLECTOR_PATH, HostError, sysrc_values, text_diff)
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import (
    _json_table, _try_read_divert_sockets, incomplete_groups, wait_for_groups)


def reflector_rc_script(service, python=None):
    """rc.d script of a reference consumer; reads ${name}_port, ${name}_sockets, ${name}_user.

    `python` runs the program, by default the interpreter running this code: on a managed host
    the one Ansible used there (/usr/local/bin/python3 exists only with the python3 package)."""
    return """#!/bin/sh
#
# Installed by the divert.fleet Ansible collection: the reference divert consumer
# (divert-reflector) as service %(name)s.
#
# PROVIDE: %(name)s
# REQUIRE: NETWORKING
# KEYWORD: shutdown

. /etc/rc.subr

name="%(name)s"
rcvar="%(name)s_enable"
load_rc_config $name
: ${%(name)s_enable:="NO"}
: ${%(name)s_port:="8000"}
: ${%(name)s_sockets:="1"}
: ${%(name)s_user:="nobody"}
: ${%(name)s_stats:="/var/run/%(name)s.stats.json"}

pidfile="/var/run/${name}.pid"
command="/usr/sbin/daemon"
command_args="-f -S -T ${name} -P ${pidfile} %(python)s %(program)s --port ${%(name)s_port} \\
    --sockets ${%(name)s_sockets} --user ${%(name)s_user} --stats ${%(name)s_stats}"
required_modules="ipdivert"

run_rc_command "$1"
""" % {"name": service, "python": python or sys.executable, "program": REFLECTOR_PATH}


def _sha(text):
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def wanted_rc_vars(consumer):
    service = consumer["service"]
    wanted = dict((str(k), str(v)) for k, v in (consumer.get("rc_vars") or {}).items())
    wanted["%s_enable" % service] = "YES"
    if consumer.get("reference"):
        wanted.setdefault("%s_port" % service, str(consumer["port"]))
        wanted.setdefault("%s_sockets" % service, str(consumer["sockets"]))
        wanted.setdefault("%s_user" % service, "nobody")
    return wanted


def ensure_ipdivert(host, check_mode, kld_list=None, sockets_bound=False):
    """fact: ipdivert.ko must be loaded (pf drops diverted packets without it, ipfw refuses divert
    rules); at boot through kld_list (there is no ipdivert_enable).

    `sockets_bound`: the kernel already shows bound divert sockets, which exist only with
    ipdivert loaded, so kldstat need not be asked. `kld_list`: the rc.conf value when the caller
    has read it already."""
    changes = []
    rc = 0 if sockets_bound else host.run(["kldstat", "-q", "-m", "ipdivert"])[0]
    if rc != 0:
        if not check_mode:
            host.run_ok(["kldload", "ipdivert"], "loading ipdivert.ko")
        changes.append("kldload ipdivert")
    current = kld_list if kld_list is not None else sysrc_values(host, ["kld_list"]).get("kld_list", "")
    if "ipdivert" not in current.split():
        value = (current + " ipdivert").strip()
        if not check_mode:
            host.run_ok(["sysrc", "kld_list=%s" % value], "adding ipdivert to kld_list")
        changes.append("kld_list+=ipdivert")
    return changes


def ensure_consumers(host, consumers, reference_program=None, backend=None, check_mode=False):
    """Consumers configured, running and bound, restarting a changed one only after the rules
    diverting to its port are withdrawn (I2, simple form; the rules come back when
    divert_rules next applies, which checks the group is whole first).
    """
    _host_guard.consumers(consumers)
    result = {"changed": False, "consumers": [], "withdrawn": [], "actions": []}
    # One read of the kernel's divert sockets and one of rc.conf serve every decision below, so a
    # run that changes nothing costs two commands.
    table = _try_read_divert_sockets(host)
    all_vars = ["kld_list"]
    for consumer in consumers:
        all_vars += sorted(wanted_rc_vars(consumer))
    current_vars = sysrc_values(host, all_vars)
    ipdivert = ensure_ipdivert(host, check_mode, kld_list=current_vars.get("kld_list", ""),
                               sockets_bound=any(row.get("bound") for row in table.values()))
    result["actions"] += ipdivert
    if ipdivert and not table:
        table = _try_read_divert_sockets(host)

    previous = {}
    recorded = host.read_file(CONSUMERS_FILE)
    if recorded:
        try:
            previous = json.loads(recorded)
        except ValueError:
            previous = {}

    program_changed = False
    if any(c.get("reference") for c in consumers):
        if not reference_program:
            raise HostError("reference consumers need reference_program (the divert-reflector source)")
        program_changed = host.ensure_file(REFLECTOR_PATH, reference_program, 0o755, check_mode)
        if program_changed:
            result["actions"].append("installed %s" % REFLECTOR_PATH)

    expected = {}
    for consumer in consumers:
        expected[int(consumer["port"])] = expected.get(int(consumer["port"]), 0) + int(consumer["sockets"])

    plans = []
    rc_before, rc_after = [], []
    writes = {}
    for consumer in consumers:
        name, service, port = consumer["name"], consumer["service"], int(consumer["port"])
        wanted = wanted_rc_vars(consumer)
        var_changes = {}
        for var in sorted(wanted):
            old = current_vars.get(var)
            rc_before.append("%s=%s" % (var, json.dumps(old)) if old is not None else "# %s unset" % var)
            rc_after.append("%s=%s" % (var, json.dumps(wanted[var])))
            if old != wanted[var]:
                var_changes[var] = {"before": old, "after": wanted[var]}
                writes[var] = wanted[var]
        script_changed = False
        if consumer.get("reference"):
            script_changed = host.ensure_file(_host_guard.owned_path(RC_D, service), reflector_rc_script(service),
                                              0o755, check_mode)
        record = {"port": port, "sockets": int(consumer["sockets"]), "rc_vars": wanted,
                  "program": _sha(reference_program) if consumer.get("reference") else None}
        before_record = previous.get(name)
        config_changed = bool(var_changes) or script_changed or (consumer.get("reference") and program_changed) \
            or (before_record is not None and before_record != record)
        bound = table.get(port, {}).get("bound", 0)
        if bound == expected[port] and not config_changed:
            running = True  # the kernel shows the whole group bound: the service runs as configured
        else:
            running = host.run(["service", service, "onestatus"])[0] == 0
        if not running:
            action = "start"
        elif config_changed or bound != expected[port]:
            action = "restart"
        else:
            action = None
        plans.append({"consumer": consumer, "record": record, "action": action, "running": running,
                      "var_changes": var_changes, "script_changed": script_changed, "bound_before": bound})

    if writes and not check_mode:
        host.run_ok(["sysrc"] + ["%s=%s" % (var, value) for var, value in sorted(writes.items())],
                    "setting rc.conf variables")

    # I2: withdraw every rule diverting to a port whose group is (re)started, in one transaction.
    touched_ports = sorted(set(int(p["consumer"]["port"]) for p in plans if p["action"]))
    if touched_ports and backend is not None:
        withdrawn = backend.withdraw_ports(touched_ports, check_mode)
        result["withdrawn"] = withdrawn
        if withdrawn:
            result["actions"].append("withdrew %d rule(s) diverting to port(s) %s"
                                     % (len(withdrawn), ", ".join(map(str, touched_ports))))

    for plan in plans:
        if plan["action"] and not check_mode:
            service = plan["consumer"]["service"]
            verb = "start" if plan["action"] == "start" else "restart"
            host.run_ok(["service", service, verb], "%s of service %s" % (verb, service))

    if not check_mode and expected and (touched_ports or incomplete_groups(table, expected)):
        # Each group waits as long as the slowest of its consumers may take (their ready_timeout).
        timeouts = {}
        for consumer in consumers:
            port = int(consumer["port"])
            timeouts[port] = max(timeouts.get(port, 0), int(consumer.get("ready_timeout") or 60))
        table, _source, _polls = wait_for_groups(host, expected, timeouts)

    new_records = dict(previous)
    for plan in plans:
        consumer = plan["consumer"]
        new_records[consumer["name"]] = plan["record"]
        changed = bool(plan["action"] or plan["var_changes"] or plan["script_changed"])
        result["consumers"].append({
            "name": consumer["name"], "service": consumer["service"], "port": int(consumer["port"]),
            "sockets": int(consumer["sockets"]), "changed": changed, "action": plan["action"],
            "was_running": plan["running"], "rc_vars_changed": plan["var_changes"],
            "rc_script_changed": plan["script_changed"],
            "bound": table.get(int(consumer["port"]), {}).get("bound", 0)})
        result["changed"] = result["changed"] or changed
    record_text = json.dumps(new_records, indent=2, sort_keys=True) + "\n"
    if host.read_file(CONSUMERS_FILE) != record_text and not check_mode:
        host.write_file(CONSUMERS_FILE, record_text, 0o600)
    result["changed"] = result["changed"] or bool(ipdivert) or program_changed
    result["sockets"] = _json_table(table)
    result["diff"] = text_diff("\n".join(rc_before) + "\n", "\n".join(rc_after) + "\n",
                               "rc.conf (managed variables)", "rc.conf (managed variables)")
    return result
