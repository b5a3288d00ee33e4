# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Diagnostics as data. Private to the divert.fleet collection.

A diagnostic is one problem found in a fleet spec: a stable code, a severity,
a message that says what is wrong and what would be right, and where it is
(file, 1-based line and column, JSON Pointer). Formatting happens at the edge
(`_formats`), never here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

ERROR = "error"
WARNING = "warning"

# code -> (severity, one-line description). Stable: tests and pipelines match on
# these codes. The descriptions feed SARIF's reporting rules and the docs.
CODES = {
    "yaml-syntax": (ERROR, "The file is not YAML (or not a single YAML document)."),
    "invisible-character": (ERROR, "The file holds a character a reviewer cannot see or that YAML reads as a line "
                                   "break (U+0085, U+2028, U+2029, a lone carriage return, a control or a "
                                   "bidirectional control)."),
    "yaml-number": (ERROR, "A number written in a YAML 1.1 form that changes its value or type: base 60 (20:21), "
                           "octal, hexadecimal, binary, with '_', as a fraction (8010.0), or too long to read."),
    "duplicate-key": (ERROR, "A mapping repeats a key."),
    "schema": (ERROR, "A JSON Schema violation: type, range, pattern, unknown key or missing key."),
    "unknown-consumer": (ERROR, "A host or rule names a consumer that is not defined."),
    "unknown-profile": (ERROR, "A host names a profile that is not defined."),
    "duplicate-rule": (ERROR, "Two rules of one host share a name."),
    "socket-limit": (ERROR, "The sockets of all consumers on one port of one host exceed 32."),
    "port-unbound": (ERROR, "A rule diverts to a port that no consumer on that host binds."),
    "port-mismatch": (ERROR, "A rule's port and its consumer's port disagree."),
    "lb-required": (ERROR, "A port with more than one socket has a consumer with lb: false."),
    "stateless-lb": (ERROR, "A pf rule with state: none targets a group of more than one socket: one socket gets all."),
    "ports-need-proto": (ERROR, "to_ports/from_ports with a protocol other than tcp or udp."),
    "ipfw-rule-range": (ERROR, "An ipfw host's rule numbers leave 1..65534, or its sets are equal or 31."),
    "family-mismatch": (ERROR, "A rule's address does not belong to the rule's family."),
    "opnsense-ipfw": (ERROR, "An OPNsense host uses ipfw, whose rules OPNsense flushes at every reload."),
    "label-length": (ERROR, "A pf rule's label ANCHOR:RULE is longer than 63 characters (pfctl refuses it)."),
    "reserved-service": (ERROR, "A consumer's service is a base-system service or divert.fleet's own."),
    "shared-service": (ERROR, "Two consumers on one host run the same service."),
    "reserved-rc-var": (ERROR, "A consumer's rc_vars set a variable of the firewall, the network, the system or "
                               "divert.fleet."),
    "unsafe-rc-value": (ERROR, "An rc_vars value holds a shell metacharacter or a character no rc.conf value "
                               "may hold."),
    "interface-keyword": (ERROR, "A rule's interface is named like a pf keyword (to, from, proto, label, ...)."),
    "standby-port": (ERROR, "A consumer's standby_port is its own port or another consumer's, its port is shared "
                            "with another consumer, or its driver runs one instance."),
    "opnsense-ids": (ERROR, "Driver opnsense-ids on a host that is not OPNsense, on a port other than 8000, or twice."),
    "suricata-listeners": (ERROR, "A suricata consumer asks one process for more than 16 divert listeners."),
    "lb-ignored": (WARNING, "An ipfw host has a group of more than one socket: every packet reaches one socket."),
    "pf-inet6": (WARNING, "A pf host diverts IPv6: the seed kernel's pf diverts it, older pf passes it uninspected."),
    "port-reserved": (WARNING, "An OPNsense host uses a port OPNsense itself uses (8000, 8100..8355, 8668)."),
    "unused-consumer": (WARNING, "A consumer on a host that no rule of that host targets."),
    "divert-all": (WARNING, "A rule with no protocol, no interface and any on both sides."),
    "suricata-lb": (WARNING, "A suricata consumer with more than one listener needs a Suricata that sets SO_REUSEPORT_LB."),
    "reload-missing": (WARNING, "A consumer watches files for a reload but declares no reload: their change restarts it."),
}


class Diagnostic:
    """One problem in a spec, at one place."""

    __slots__ = ("code", "severity", "message", "path", "file", "line", "column", "omitted")

    def __init__(self, code, message, path="", file=None, line=None, column=None, severity=None):
        if code not in CODES:
            raise ValueError("unknown diagnostic code %r" % code)
        self.code = code
        self.severity = severity or CODES[code][0]
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        self.column = column
        # Not 0: this diagnostic stands for that many more of its code, not listed (< 0: at least that many)
        self.omitted = 0

    def as_dict(self):
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "file": self.file,
            "line": self.line,
            "column": self.column,
        }

    def sort_key(self):
        return (self.line or 0, self.column or 0, self.code, self.path, self.message)

    def __eq__(self, other):
        return isinstance(other, Diagnostic) and self.as_dict() == other.as_dict()

    def __hash__(self):
        return hash((self.code, self.path, self.message, self.line, self.column))

    def __repr__(self):
        return "Diagnostic(%s %s:%s:%s %s: %s)" % (
            self.code, self.file, self.line, self.column, self.path, self.message)


# At most this many diagnostics of one code are listed; the rest are counted in one "and N more"
# diagnostic, so that a spec of aliases repeated thousands of times cannot flood a pipeline's log.
MAX_PER_CODE = 50


def pointer(parts):
    """JSON Pointer (RFC 6901) for a sequence of keys and indexes."""
    if not parts:
        return ""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def omitted(first, count, listed=MAX_PER_CODE, at_least=False):
    """The diagnostic that stands for `count` more of `first`'s code, from `first` on (`at_least`:
    the check stopped looking, so there may be more)."""
    diag = Diagnostic(
        first.code, "and %s%d more %s diagnostic%s like the %d above, from here on; fix those and validate again" % (
            "at least " if at_least else "", count, first.code, "" if count == 1 else "s", listed),
        path=first.path, file=first.file, line=first.line, column=first.column, severity=first.severity)
    diag.omitted = -count if at_least else count
    return diag


def sort_unique(diagnostics, per_code=MAX_PER_CODE):
    """Sorted by position, each distinct diagnostic once, at most `per_code` of each code: the rest
    become one diagnostic saying how many more there are (added to any such count already made)."""
    seen = set()
    out = []
    listed = {}
    left_out = {}  # code -> [first diagnostic left out, count]
    for diag in sorted(diagnostics, key=Diagnostic.sort_key):
        if diag.omitted:
            entry = left_out.setdefault(diag.code, [diag, 0, False])
            entry[1] += abs(diag.omitted)
            entry[2] = entry[2] or diag.omitted < 0
            continue
        key = (diag.code, diag.path, diag.message, diag.line, diag.column)
        if key in seen:
            continue
        seen.add(key)
        count = listed.get(diag.code, 0)
        if per_code is None or count < per_code:
            listed[diag.code] = count + 1
            out.append(diag)
            continue
        entry = left_out.setdefault(diag.code, [diag, 0, False])
        entry[1] += 1
        if Diagnostic.sort_key(diag) < Diagnostic.sort_key(entry[0]):
            entry[0] = diag
    for code, (first, count, at_least) in left_out.items():
        out.append(omitted(first, count, listed.get(code, 0), at_least))
    out.sort(key=Diagnostic.sort_key)
    return out
