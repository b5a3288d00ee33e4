# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Divert sockets as the kernel reports them, and waiting for groups to be whole (I1).

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.module_utils._host_os import GroupTimeout, HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_parse import (
    parse_pcblist, parse_sockstat_json, parse_sockstat_text, summarise)

SOCKSTAT_JSON = ["sockstat", "-4", "-P", "divert", "--libxo", "json"]
SOCKSTAT_TEXT = ["sockstat", "-4", "-P", "divert"]
SYSCTL_PCBLIST = ["sysctl", "-x", "net.inet.divert.pcblist"]


def _try_read_divert_sockets(host):
    """The divert socket table, or {} where it cannot be read (e.g. ipdivert not loaded yet)."""
    try:
        return read_divert_sockets(host)[0]
    except HostError:
        return {}


def read_divert_sockets(host):
    """(table, source): bound divert sockets per port, as the kernel reports them.

    fact: `sysctl -x net.inet.divert.pcblist` has one record per bound socket, whatever number of
    processes hold it; sockstat prints one row per process and descriptor, so a socket a forked
    child shares would count twice there. The pcblist is read first; sockstat's libxo JSON and
    then its plain text serve where the pcblist cannot be read (their counts are rows).
    """
    errors = []
    for argv, parser, source in ((SYSCTL_PCBLIST, parse_pcblist, "pcblist"),
                                 (SOCKSTAT_JSON, parse_sockstat_json, "sockstat-json"),
                                 (SOCKSTAT_TEXT, parse_sockstat_text, "sockstat")):
        rc, out, err = host.run(argv)
        if rc != 0:
            errors.append("`%s` exited %d: %s" % (" ".join(argv), rc, err.strip()))
            continue
        try:
            return summarise(parser(out)), source
        except ValueError as exc:
            errors.append("`%s`: %s" % (" ".join(argv), exc))
    raise HostError("cannot read divert sockets on %s: %s" % (host.name, "; ".join(errors)))


def attribute(host, table):
    """The socket table with the processes holding each port's sockets (sockstat's rows), the
    counts kept as the kernel's pcblist gave them. Where sockstat cannot be read, unchanged."""
    rc, out, _err = host.run(SOCKSTAT_JSON)
    try:
        rows = parse_sockstat_json(out) if rc == 0 else []
    except ValueError:
        rows = []
    held = summarise(rows)
    for port, entry in table.items():
        if port in held:
            entry["pids"], entry["commands"] = held[port]["pids"], held[port]["commands"]
    return table


def bound_counts(table, ports):
    return dict((port, table.get(port, {}).get("bound", 0)) for port in ports)


def incomplete_groups(table, expected):
    """[(port, expected, bound)] for every port whose bound count is not exactly the expected one."""
    out = []
    for port in sorted(expected):
        bound = table.get(port, {}).get("bound", 0)
        if bound != expected[port]:
            out.append((port, expected[port], bound))
    return out


def describe_incomplete(host_name, missing):
    return "; ".join("host %s port %d: %d socket(s) declared, %d bound" % (host_name, port, want, bound)
                     for port, want, bound in missing)


def wait_for_groups(host, expected, timeout, interval=0.1, max_interval=1.0, progress=None, every=3.0):
    """Poll until every port has exactly its expected bound sockets; return the socket table.

    `timeout` is seconds for every port, or a mapping port -> seconds (each consumer's
    `ready_timeout`). Raises GroupTimeout, as soon as a port that is still incomplete is past its
    own timeout, naming host, port, expected and bound counts. Exact, not at least: I1 wants the
    group to be exactly the declared size (more sockets would be a foreign member).
    `progress`, if given, is called with a line on the bound counts at most every `every` seconds.
    """
    expected = dict((int(port), int(count)) for port, count in expected.items())
    if isinstance(timeout, dict):
        limits = dict((int(port), float(seconds)) for port, seconds in timeout.items())
        default = max(limits.values()) if limits else 60.0
    else:
        limits, default = {}, float(timeout)
    start = host.clock()
    deadlines = dict((port, start + limits.get(port, default)) for port in expected)
    polls = 0
    told = None
    while True:
        table, source = read_divert_sockets(host)
        polls += 1
        missing = incomplete_groups(table, expected)
        if not missing:
            return table, source, polls
        now = host.clock()
        if progress is not None and (told is None or now - told >= every):
            progress("waiting %ds: %s" % (now - start, describe_incomplete(host.name, missing)))
            told = now
        late = [m for m in missing if now >= deadlines[m[0]]]
        if late:
            waited = max(deadlines[p] - start for p, _e, _b in late)
            raise GroupTimeout(
                "divert groups not whole after %ss: %s" % (_seconds(waited), describe_incomplete(host.name, missing)),
                host=host.name, timeout=_seconds(waited), sockets=_json_table(table),
                incomplete=[{"port": p, "expected": e, "bound": b} for p, e, b in missing])
        next_deadline = min(deadlines[p] for p, _e, _b in missing)
        host.sleep(min(interval, max(0.0, next_deadline - now)))
        interval = min(interval * 2, max_interval)


def _seconds(value):
    return int(value) if float(value).is_integer() else round(value, 1)


def _json_table(table):
    return dict((str(port), entry) for port, entry in sorted(table.items()))
