# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consumers on a host: what runs, what the spec wants, and what a change needs.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).

The record (/var/db/divert_fleet/consumers.json) says, per consumer, which port its serving
group is on (`live_port`: the spec's `port`, or `standby_port` after a blue/green switch),
its size, the settings its instance was started with, fingerprints of the files whose change
needs a restart (the program, `watch.restart`) or only a reload (`watch.reload`), and the
rc.conf variables the collection set for it, so that it can remove them and never others.

`change_needed` is the one place that decides whether a running group needs nothing, a
reload (no rebind: nothing remaps) or a restart (a new group: blue/green with a standby
port, or the disruptive in-place form only where the play allows it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import json
import os

from ansible_collections.divert.fleet.plugins.module_utils._host_os import CONSUMERS_FILE, sysrc_values

RECORD_VERSION = 2
LOADER_CONF_LOCAL = "/boot/loader.conf.local"
DEFAULT_DRAIN_TIMEOUT = 300


# --- the record ---------------------------------------------------------------------------------

def read_record(host):
    """{consumer name: entry} as the last change left it; an older record is read as version 2."""
    text = host.read_file(CONSUMERS_FILE)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, dict) and data.get("version") == RECORD_VERSION:
        return dict(data.get("consumers") or {})
    records = {}
    for name, entry in (data.items() if isinstance(data, dict) else []):
        if isinstance(entry, dict) and "port" in entry:  # version 1: {port, sockets, rc_vars, program}
            records[name] = {"live_port": entry["port"], "sockets": entry.get("sockets"),
                             "settings": entry.get("rc_vars") or {},
                             "managed_vars": sorted(entry.get("rc_vars") or {}), "restart_fp": {},
                             "reload_fp": {}, "driver": "reflector" if entry.get("program") else "rc",
                             "service": None, "migrated": True}
    return records


def record_text(records):
    return json.dumps({"version": RECORD_VERSION, "consumers": records}, indent=2, sort_keys=True) + "\n"


def write_record(host, records, check_mode):
    text = record_text(records)
    if host.read_file(CONSUMERS_FILE) == text:
        return False
    if not check_mode:
        host.write_file(CONSUMERS_FILE, text, 0o600)
    return True


# --- fingerprints ------------------------------------------------------------------------------

def fingerprint(host, patterns):
    """{path: sha256 of its content (None if unreadable)} for paths and last-component globs."""
    prints = {}
    for pattern in patterns or ():
        if any(char in pattern for char in "*?["):
            paths = sorted(path[len(host.root.rstrip("/")):] if host.root not in ("", "/") else path
                           for path in glob.glob(host.path(pattern)))
        else:
            paths = [pattern]
        for path in paths:
            content = host.read_file(path, binary=True)
            prints[path] = hashlib.sha256(content).hexdigest() if content is not None else None
    return prints


# --- what a change needs ---------------------------------------------------------------------------

def change_needed(record, wanted):
    """('restart' | 'reload' | None, [reasons]) for a running group.

    `record` is what runs (its entry), `wanted` what the spec asks for, both with `live_port`
    (wanted: the port the group would serve on), `sockets`, `settings`, `driver`, `restart_fp`
    and `reload_fp`. Any change of the group's size or port, of its instance's settings, of its
    driver or of a file that is the program or listed in watch.restart needs a new group (on the
    seed kernel any change of a group's count remaps its flows); a change of only the files in
    watch.reload needs a reload; anything else needs nothing.
    """
    reasons = []
    if record.get("driver") not in (None, wanted["driver"]):
        reasons.append("driver %s -> %s" % (record.get("driver"), wanted["driver"]))
    if record.get("live_port") != wanted["live_port"]:
        reasons.append("port %s -> %s" % (record.get("live_port"), wanted["live_port"]))
    if record.get("sockets") != wanted["sockets"]:
        reasons.append("sockets %s -> %s" % (record.get("sockets"), wanted["sockets"]))
    before, after = record.get("settings") or {}, wanted["settings"]
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            reasons.append("%s %s -> %s" % (key, json.dumps(before.get(key)), json.dumps(after.get(key))))
    reasons += _changed_files(record.get("restart_fp"), wanted["restart_fp"], record.get("migrated"))
    if reasons:
        return "restart", reasons
    reloads = _changed_files(record.get("reload_fp"), wanted["reload_fp"], record.get("migrated"))
    if reloads:
        return "reload", reloads
    return None, []


def _changed_files(before, after, migrated):
    before = before or {}
    if migrated and not before:
        return []  # a record from before fingerprints were kept: take the files as they are
    return ["%s changed" % path for path in sorted(set(before) | set(after)) if before.get(path) != after.get(path)]


def policy(driver_name, reload_method, standby_port, watch):
    """What kinds of change a consumer takes how, in words, for plan and for the module result."""
    restart = "a new group on %s (blue/green: nothing remaps, nothing goes uninspected)" % (
        "the idle one of its port and standby port %s; the live port alternates" % standby_port) if standby_port else \
        "a restart in place, refused unless the play allows disruption (its flows remap, its traffic passes " \
        "undiverted or is dropped while it restarts)"
    text = ("sockets, port, settings, program%s: %s" % (
        ", " + ", ".join((watch or {}).get("restart") or []) if (watch or {}).get("restart") else "", restart))
    if reload_method and (watch or {}).get("reload"):
        text += "; %s: reload (%s), no rebind" % (", ".join(watch["reload"]), reload_method)
    return text


# --- ipdivert -----------------------------------------------------------------------------------

def ensure_ipdivert(host, platform, check_mode, kld_list=None, sockets_bound=False):
    """fact: ipdivert.ko must be loaded (pf drops diverted packets without it, ipfw refuses divert
    rules). At boot: FreeBSD through kld_list (rc.d/kld; there is no ipdivert_enable); OPNsense
    does not run rc.d/kld, so there through the loader (/boot/loader.conf.local, which OPNsense
    keeps: it generates /boot/loader.conf itself).

    `sockets_bound`: the kernel already shows bound divert sockets, which exist only with
    ipdivert loaded, so kldstat need not be asked. `kld_list`: the rc.conf value when the caller
    has read it already."""
    changes = []
    rc = 0 if sockets_bound else host.run(["kldstat", "-q", "-m", "ipdivert"])[0]
    if rc != 0:
        if not check_mode:
            host.run_ok(["kldload", "ipdivert"], "loading ipdivert.ko")
        changes.append("kldload ipdivert")
    if platform == "opnsense":
        current = host.read_file(LOADER_CONF_LOCAL) or ""
        if not any(line.strip() == 'ipdivert_load="YES"' for line in current.splitlines()):
            text = current + ("" if current.endswith("\n") or not current else "\n") + 'ipdivert_load="YES"\n'
            if not check_mode:
                host.write_file(LOADER_CONF_LOCAL, text, 0o644)
            changes.append('ipdivert_load="YES" in %s' % LOADER_CONF_LOCAL)
        return changes
    current = kld_list if kld_list is not None else sysrc_values(host, ["kld_list"]).get("kld_list", "")
    if "ipdivert" not in current.split():
        value = (current + " ipdivert").strip()
        if not check_mode:
            host.run_ok(["sysrc", "kld_list=%s" % value], "adding ipdivert to kld_list")
        changes.append("kld_list+=ipdivert")
    return changes


def rc_conf_d_values(host, path, names):
    """Values of `names` in an rc.conf.d file the collection wrote (`NAME="value"` lines)."""
    values = {}
    for line in (host.read_file(path) or "").splitlines():
        name, sep, raw = line.partition("=")
        if sep and name in names:
            values[name] = raw.strip().strip('"')
    return values


def path_exists(host, path):
    return os.path.exists(host.path(path))
