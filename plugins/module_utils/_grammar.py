# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition of an allowed string. Private to the divert.fleet collection.

Every string of a fleet spec that becomes a name, a file name, an rc.conf line or a token of a
pf or ipfw rule is judged here: by the JSON Schema (whose patterns are `schema_pattern(kind)`,
a unit test keeps them equal), by the controller's checks, and by the on-host modules, which
judge their arguments again whatever the controller sent.

SELF-CONTAINED ON PURPOSE: standard library only, Python 3.8+ syntax, no import of the rest of
the collection. The file is also shipped to the managed FreeBSD hosts and run there, including
from the boot-time gate.

The API (stable; the on-host side calls it):
- `KINDS`: the kinds of string, e.g. "name", "host", "interface", "service", "rc_var",
  "rc_value", "anchor", "text"; `PATTERNS[kind]` is the shape, always used whole
  (`re.fullmatch`, never `^...$`: in Python `$` also matches before a final newline, which is how
  "reboot\\n" once passed as an rc.conf variable name);
- `problem(kind, value)`: None when `value` is an allowed string of that kind, else a short
  message that quotes the value (cut to `QUOTE_MAX` characters) and says what would be right;
  it includes the reservations below;
- `shape_problem(kind, value)`: the same without reservations (exactly what the schema checks);
- `reserved(kind, value, service=None)`: why a well-formed value is reserved, or None;
- `rc_value_problem(value)`, `is_reserved_service(name)`, `is_reserved_rc_var(name, service=None)`,
  `is_pf_keyword(name)`;
- `schema_pattern(kind)`: the pattern for JSON Schema (ECMA-262, jsonschema-rs, Python
  `re.search`), which means the same as `re.fullmatch(PATTERNS[kind], ...)` in all three;
- `INVISIBLE_RE` and `invisible_characters(text)`: the characters a reviewer cannot see or that
  YAML 1.1 reads as line breaks, for one scan of a file's text; `ANY_INVISIBLE_RE` for values;
- `quote(value)`: a value for a message, JSON-quoted and bounded;
- `standby_clash(port, standby_port, others)`: why a consumer's standby port cannot be, beside the
  host's other consumers (the one rule of ports the spec check and the on-host guard share).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import unicodedata

DEFAULT_ANCHOR = "divert_fleet"
QUOTE_MAX = 100  # characters of a value a message quotes (every valid name fits); longer values are cut

# --- forbidden characters ----------------------------------------------------------------------
# Code point ranges (inclusive). Kept as numbers so that the Python and the JSON Schema forms of
# every character class are generated from one list.
CONTROL_RANGES = ((0x00, 0x1F), (0x7F, 0x9F))  # C0, DEL, C1 (C1 holds U+0085 NEXT LINE)
SEPARATOR_RANGES = ((0x2028, 0x2029),)  # LINE SEPARATOR, PARAGRAPH SEPARATOR
BIDI_RANGES = (  # bidirectional controls: reorder what an editor or a diff shows ("Trojan Source")
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x200E, 0x200F),  # LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),  # LRE, RLE, PDF, LRO, RLO
    (0x2066, 0x2069),  # LRI, RLI, FSI, PDI
)
# Never allowed in any value; C0 includes newline, carriage return and tab.
INVISIBLE_RANGES = CONTROL_RANGES + SEPARATOR_RANGES + BIDI_RANGES
# What ends a pf or ipfw statement, or a quoted pf string: refused in every value that reaches
# rendered rules (newline is a control character, listed again for the reader).
STATEMENT_ENDERS = "\n;#\"{}\\"
# What rc.subr's `eval` of `${name}_flags` (and sh sourcing rc.conf) would run or redirect.
SHELL_METACHARACTERS = "`$&|;<>()\\\"'\n"
# Free text (descriptions): no statement enders and nothing the shell would expand.
TEXT_EXTRA = STATEMENT_ENDERS + "$`"

# File-level: what the loader refuses anywhere in a spec, comments included. Tab, newline and
# carriage return are a file's own structure and are allowed there; a carriage return that is not
# part of CRLF is a line break to YAML 1.1 but not to a reviewer, so the loader scans for it too.
FILE_ALLOWED_CONTROLS = "\t\n\r"


def _escape(code):
    """One character for a regex character class, written the same for Python, ECMA-262 and Rust."""
    char = chr(code)
    if char.isalnum() and code < 0x80:
        return char
    if char in "\\]^-[":
        return "\\" + char
    if 0x20 < code < 0x7F and char not in "&|~":  # "&&", "||", "~~" are set operators in some engines
        return char
    return "\\u%04x" % code


def _class_body(ranges, extra=""):
    parts = []
    for low, high in ranges:
        parts.append(_escape(low) if low == high else "%s-%s" % (_escape(low), _escape(high)))
    covered = set()
    for low, high in ranges:
        covered.update(range(low, high + 1))
    for char in sorted(set(extra)):
        if ord(char) not in covered:
            parts.append(_escape(ord(char)))
    return "".join(parts)


def _file_ranges():
    """INVISIBLE_RANGES without tab, newline and carriage return."""
    allowed = {ord(c) for c in FILE_ALLOWED_CONTROLS}
    out = []
    for low, high in INVISIBLE_RANGES:
        start = None
        for code in range(low, high + 1):
            if code in allowed:
                if start is not None:
                    out.append((start, code - 1))
                    start = None
            elif start is None:
                start = code
        if start is not None:
            out.append((start, high))
    return tuple(out)


_INVISIBLE_BODY = _class_body(INVISIBLE_RANGES)
_TEXT_BAD = _class_body(INVISIBLE_RANGES, TEXT_EXTRA)
_RC_VALUE_BAD = _class_body(INVISIBLE_RANGES, STATEMENT_ENDERS + SHELL_METACHARACTERS)

# A carriage return not followed by a newline is a line break to YAML and invisible in a diff.
INVISIBLE_RE = re.compile("[%s]|\\r(?!\\n)" % _class_body(_file_ranges()))
# Any character of INVISIBLE_RANGES (tab, newline and carriage return included): for values.
ANY_INVISIBLE_RE = re.compile("[%s]" % _INVISIBLE_BODY)

# --- names -------------------------------------------------------------------------------------
# kind -> the shape, used whole. Lengths are part of the shape where the name has a natural bound.
PATTERNS = {
    # consumers, profiles, rules: they become pf labels ("ANCHOR:RULE"), file names and JSON keys.
    "name": "[a-z][a-z0-9_-]{0,62}",
    # inventory hostnames; a host's rules file is named after it (NAME.pf.conf).
    "host": "[A-Za-z0-9][A-Za-z0-9._-]{0,252}",
    # pf `on IF`, ipfw `via IF`: IFNAMSIZ is 16 with the NUL (freebsd-facts.md, pf).
    "interface": "[a-z][a-z0-9_.]{0,14}",
    # A file name in /usr/local/etc/rc.d and the prefix of the service's rc.conf variables
    # (`${name}_enable`): no "-" (not valid in a shell variable name), no "." or "/" (paths).
    "service": "[a-z][a-z0-9_]{0,62}",
    # An rc.conf variable: a shell variable name.
    "rc_var": "[A-Za-z_][A-Za-z0-9_]{0,127}",
    # A pf anchor: `pfctl -a NAME`, `anchor "NAME"` in pf.conf, a PHP string in OPNsense's plugin
    # hook. No "/" (that names an anchor nested in another program's anchor), no quote, space or
    # newline; not empty (`pfctl -a ""` is the main ruleset); PF_ANCHOR_NAME_SIZE is 64 with the
    # NUL. A first "_" is refused: pfctl reserves such names for internal use (I: OpenBSD's pfctl
    # says so; not read in FreeBSD's source).
    "anchor": "[A-Za-z][A-Za-z0-9_-]{0,62}",
    # An rc.conf value (double-quoted by sysrc; rc.subr evals `${name}_flags` unquoted).
    "rc_value": "[^%s]*" % _RC_VALUE_BAD,
    # Free text that never reaches a rule (a consumer's description).
    "text": "[^%s]*" % _TEXT_BAD,
    # A file on the host a consumer's change is measured by (watch.restart, watch.reload): absolute,
    # components of letters, digits and . _ + @ -, globs (* ? [ ]) allowed, never a `..` component.
    "path": "(?!.*/\\.\\.(?:/|(?![\\s\\S])))(?:/[A-Za-z0-9._+@*?\\[\\]-]+)+",
    # A port range "lo:hi" (numbers are checked as numbers by the checks).
    "port_range": "[0-9]{1,5}:[0-9]{1,5}",
    # `any`, an IPv4 or IPv6 address or prefix (the checks parse it with ipaddress).
    "address": "any|[0-9]{1,3}(?:\\.[0-9]{1,3}){3}(?:/[0-9]{1,2})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:/[0-9]{1,3})?",
}
KINDS = tuple(PATTERNS)
# Aliases: the three kinds of spec name share one shape.
ALIASES = {"consumer": "name", "profile": "name", "rule": "name"}
MAX_LENGTH = {"text": 200, "rc_value": 1024, "address": 49, "path": 1024}

# What each kind is, for messages ("... is not allowed: <what>").
WHAT = {
    "name": "a lower-case letter, then lower-case letters, digits, '_' or '-', at most 63 characters",
    "host": "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 253 characters",
    "interface": "a lower-case letter, then lower-case letters, digits, '_' or '.', at most 15 characters "
                 "(e.g. igb0, vtnet1, lagg0.100)",
    "service": "an rc.d service name: a lower-case letter, then lower-case letters, digits or '_', at most 63 "
               "characters (no '-', '.' or '/': it names a file in /usr/local/etc/rc.d and prefixes rc.conf "
               "variables)",
    "rc_var": "an rc.conf variable name: a letter or '_', then letters, digits or '_', at most 128 characters",
    "anchor": "a pf anchor name: a letter, then letters, digits, '_' or '-', at most 63 characters (no '/', "
              "quote or space)",
    "rc_value": "an rc.conf value of at most 1024 characters without control characters, line or paragraph "
                "separators, bidirectional controls, or any of ` $ & | ; < > ( ) \\ \" ' # { }",
    "text": "text of at most 200 characters without control characters, line or paragraph separators, "
            "bidirectional controls, or any of ; # \" { } \\ $ `",
    "port_range": "a port range \"lo:hi\" of two numbers 1..65535",
    "path": "an absolute path of letters, digits and . _ + @ - (the last parts may be globs: * ? [ ]), no '..', "
            "at most 1024 characters",
    "address": "any, an IPv4 or IPv6 address, or a CIDR prefix",
}

# What each kind is called in a message.
LABEL = {
    "name": "name", "host": "host name", "interface": "interface", "service": "service",
    "rc_var": "rc.conf variable", "anchor": "pf anchor", "rc_value": "rc.conf value", "text": "text",
    "port_range": "port range", "address": "address", "path": "path",
}

_COMPILED = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}

# --- reserved names ----------------------------------------------------------------------------
# Services a consumer may not name: the consumer role writes `${service}_enable` and the
# consumer's rc_vars, may install /usr/local/etc/rc.d/SERVICE (reference: true), and restarts the
# service whenever its configuration changes. Each of these, restarted or overwritten, cuts what
# a firewall must keep doing. name -> why.
_FILTER = "the packet filter: restarting it reloads or disables the whole ruleset, divert rules included"
_NETWORK = "networking: restarting it takes interfaces or routes down"
_ACCESS = "the way operators and Ansible reach the host"
RESERVED_SERVICES = {
    # the packet filters and their helpers
    "pf": _FILTER, "pflog": "pf's logging interface", "pfsync": "pf's state synchronisation",
    "ipfw": _FILTER, "ipfilter": _FILTER, "ipnat": "ipfilter's NAT", "ipfs": "ipfilter's state saving",
    "ipmon": "ipfilter's logging", "dummynet": "ipfw's traffic shaper", "ipsec": "IPsec policies",
    # modules and boot
    "kld": "kernel module loading at boot (kld_list, where divert.fleet loads ipdivert.ko)",
    "kldxref": "the kernel module index", "sysctl": "kernel settings applied at boot",
    "divert_fleet": "divert.fleet's own boot gate, which loads the divert rules once every group is bound",
    # networking
    "netif": _NETWORK, "routing": _NETWORK, "defaultroute": _NETWORK, "netwait": _NETWORK,
    "static_arp": _NETWORK, "static_ndp": _NETWORK, "rtsold": _NETWORK, "dhclient": _NETWORK,
    "hostname": "the host's name", "resolv": "name resolution", "local_unbound": "name resolution",
    # access, time, logging, scheduling, devices
    "sshd": _ACCESS, "devd": "device events (interfaces appearing)", "syslogd": "system logging",
    "newsyslog": "log rotation", "cron": "scheduled jobs", "ntpd": "the clock", "ntpdate": "the clock",
    "powerd": "power management", "moused": "the console",
    # OPNsense's own service manager and web interface
    "configd": "OPNsense's configuration daemon (it regenerates rc.conf.d and reloads the filter)",
    "opnsense": "OPNsense's own start-up",
}
# Names starting with these are the collection's own (present or future).
RESERVED_SERVICE_PREFIXES = ("divert_fleet",)

# rc.conf variables a consumer's rc_vars may not set. exact name -> why.
RESERVED_RC_VARS = {
    "kld_list": "divert.fleet loads ipdivert.ko through it (on FreeBSD)",
    "gateway_enable": "it turns IPv4 forwarding on or off: the host stops routing",
    "ipv6_gateway_enable": "it turns IPv6 forwarding on or off: the host stops routing",
    "defaultrouter": "the default route", "ipv6_defaultrouter": "the default route",
    "static_routes": "the routing table", "ipv6_static_routes": "the routing table",
    "cloned_interfaces": "the interfaces", "network_interfaces": "the interfaces",
    "hostname": "the host's name",
    "rc_conf_files": "which files rc.conf is read from",
    "local_startup": "where local rc.d scripts (the consumers and divert.fleet's gate) are found",
    "root_rw_mount": "whether the root file system is writable",
}
# prefix -> why; every reserved service's `NAME_` variables are reserved as well (see reserved()).
RESERVED_RC_VAR_PREFIXES = {
    "divert_fleet": "divert.fleet's own variables",
    "firewall_": "ipfw's rc.conf settings (firewall_enable, firewall_type, firewall_script, ...)",
    "ifconfig_": "interface configuration", "ipv6_": "IPv6 configuration", "route_": "the routing table",
    "pf_": "pf's rc.conf settings (pf_enable, pf_rules, pf_flags, ...)",
}

# pf keywords (freebsd-src sbin/pfctl/parse.y, lookup(), commit 01c44736028a): an interface with
# one of these names would be read as the keyword, so `on to` is not "interface to". Only the
# ones the interface pattern can produce matter; the whole table is kept so it can be compared.
PF_KEYWORDS = frozenset((
    "all", "allow-opts", "altq", "anchor", "antispoof", "any", "bandwidth", "binat", "binat-anchor",
    "bitmask", "block", "block-policy", "bridge-to", "buckets", "cbq", "code", "codelq", "debug",
    "divert-reply", "divert-to", "dnpipe", "dnqueue", "drop", "dup-to", "ether", "fail-policy", "fairq",
    "fastroute", "file", "fingerprints", "flags", "floating", "flush", "for", "fragment", "from", "global",
    "group", "hfsc", "hogs", "hostid", "icmp-type", "icmp6-type", "if-bound", "in", "include", "inet",
    "inet6", "interval", "keep", "keepcounters", "l3", "label", "limit", "linkshare", "load", "log",
    "loginterface", "map-e-portset", "match", "max", "max-mss", "max-src-conn", "max-src-conn-rate",
    "max-src-nodes", "max-src-states", "min-ttl", "modulate", "nat", "nat-anchor", "no", "no-df",
    "no-route", "no-sync", "on", "optimization", "os", "out", "overload", "pass", "port", "prio",
    "priority", "priq", "probability", "proto", "qlimit", "queue", "quick", "random", "random-id", "rdr",
    "rdr-anchor", "realtime", "reassemble", "reply-to", "require-order", "return", "return-icmp",
    "return-icmp6", "return-rst", "ridentifier", "round-robin", "route", "route-to", "rtable", "rule",
    "ruleset-optimization", "scrub", "set", "set-tos", "skip", "sloppy", "source-hash", "source-track",
    "state", "state-defaults", "state-policy", "static-port", "sticky-address", "syncookies", "synproxy",
    "table", "tag", "tagged", "target", "tbrsize", "timeout", "to", "tos", "ttl", "upperlimit",
    "urpf-failed", "user",
))
# Words the interface position takes specially besides pf's keywords: ipfw's `via any` means every
# interface (sbin/ipfw/ipfw2.c, fill_iface); "any" is a pf keyword as well.
INTERFACE_WORDS = frozenset(("any",))


# --- functions ---------------------------------------------------------------------------------

def _kind(kind):
    kind = ALIASES.get(kind, kind)
    if kind not in PATTERNS:
        raise ValueError("unknown kind of string %r; kinds: %s" % (kind, ", ".join(KINDS + tuple(ALIASES))))
    return kind


# Control characters have no name in the Unicode database; these are the ones worth naming.
_CONTROL_NAMES = {
    0x00: "NULL", 0x09: "TAB", 0x0A: "NEWLINE", 0x0B: "LINE TABULATION", 0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE", 0x7F: "DELETE", 0x85: "NEXT LINE",
    0x9B: "CONTROL SEQUENCE INTRODUCER",
}


def char_name(char):
    """`U+2028 LINE SEPARATOR`: a character as a message names it."""
    code = ord(char)
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(code, "")
    if not name and any(low <= code <= high for low, high in CONTROL_RANGES):
        name = "CONTROL CHARACTER"
    return "U+%04X%s" % (code, " " + name if name else "")


def _show(char):
    """One character for a message: printable ASCII as itself in quotes, anything else by name."""
    if 0x20 < ord(char) < 0x7F:
        return "'%s'" % char if char != "'" else '"\'"'
    return char_name(char)


def quote(value, limit=QUOTE_MAX):
    """A value for a message: JSON-quoted (escapes show what is invisible), at most `limit` characters
    of it, and the full length when cut."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        if value.bit_length() > 200:  # str() of a huge int is slow, and refused past 4300 digits
            return "a number of about %d digits" % int(value.bit_length() * 0.30103 + 1)
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if not isinstance(value, str):
        return "a %s" % type(value).__name__
    if len(value) <= limit:
        return json.dumps(value)
    return "%s... (%d characters)" % (json.dumps(value[:limit])[:-1], len(value))


def matches(kind, value):
    """Whether `value` has the shape of `kind` (what the schema checks)."""
    kind = _kind(kind)
    if not isinstance(value, str) or len(value) > MAX_LENGTH.get(kind, len(value)):
        return False
    return _COMPILED[kind].fullmatch(value) is not None


# The first character a value may not hold: for free text and rc.conf values their forbidden class,
# for names every character that could end a statement, a path or a shell word.
_BAD_CHARACTER = {
    "rc_value": re.compile("[%s]" % _RC_VALUE_BAD),
    "text": re.compile("[%s]" % _TEXT_BAD),
    "path": re.compile("[^A-Za-z0-9._+@*?\\[\\]/-]"),
}
_BAD_IN_NAME = re.compile("[%s]" % _class_body(INVISIBLE_RANGES, STATEMENT_ENDERS + SHELL_METACHARACTERS + "/ "))


def _bad_character(kind, value):
    """(index, character) of the first character a value of this kind may not hold, or None."""
    found = _BAD_CHARACTER.get(kind, _BAD_IN_NAME).search(value)
    return (found.start(), found.group()) if found else None


def shape_problem(kind, value):
    """None when `value` has the shape of `kind`, else what is wrong and what would be right."""
    kind = _kind(kind)
    label = LABEL[kind]
    if not isinstance(value, str):
        return "%s %s is not text; expected %s" % (label, quote(value), WHAT[kind])
    limit = MAX_LENGTH.get(kind)
    if limit is not None and len(value) > limit:
        return "%s %s is too long (at most %d characters)" % (label, quote(value), limit)
    if _COMPILED[kind].fullmatch(value):
        return None
    if value == "":
        return "%s is empty; expected %s" % (label, WHAT[kind])
    bad = _bad_character(kind, value)
    if bad is not None:
        index, char = bad
        return "%s %s holds %s at character %d; expected %s" % (
            label, quote(value), _show(char), index + 1, WHAT[kind])
    return "%s %s is not allowed here; expected %s" % (label, quote(value), WHAT[kind])


def reserved(kind, value, service=None):
    """Why a well-formed value of `kind` is reserved, or None. `service` is the consumer's own
    service, whose `SERVICE_*` variables are its own (for kind "rc_var")."""
    kind = _kind(kind)
    if not isinstance(value, str):
        return None
    if kind == "service":
        if value in RESERVED_SERVICES:
            return RESERVED_SERVICES[value]
        for prefix in RESERVED_SERVICE_PREFIXES:
            if value.startswith(prefix):
                return "names starting with %s are divert.fleet's own" % prefix
        return None
    if kind == "rc_var":
        if value in RESERVED_RC_VARS:
            return RESERVED_RC_VARS[value]
        if service and value.startswith(service + "_") and reserved("service", service) is None:
            return None  # the consumer's own variable
        for prefix, why in RESERVED_RC_VAR_PREFIXES.items():
            if value.startswith(prefix):
                return why
        for name, why in RESERVED_SERVICES.items():
            if value.startswith(name + "_"):
                return "it configures the service %s (%s)" % (name, why)
        return None
    if kind == "interface":
        if value in PF_KEYWORDS:
            return "it is a pf keyword (sbin/pfctl/parse.y): `on %s` would not name an interface" % value
        if value in INTERFACE_WORDS:
            return "pf and ipfw read %s in that place as a word of their own, not an interface" % json.dumps(value)
    return None


def problem(kind, value):
    """None when `value` is an allowed string of `kind`, else what is wrong and what would be right:
    the shape first, then the reservations."""
    found = shape_problem(kind, value)
    if found is not None:
        return found
    why = reserved(kind, value)
    if why is not None:
        return "%s %s is reserved: %s" % (LABEL[_kind(kind)], quote(value), why)
    return None


def rc_value_problem(value):
    """None when `value` may be written as an rc.conf value, else why not."""
    return problem("rc_value", value)


def is_reserved_service(name):
    return reserved("service", name) is not None


def is_reserved_rc_var(name, service=None):
    return reserved("rc_var", name, service) is not None


def is_pf_keyword(name):
    return name in PF_KEYWORDS


def schema_pattern(kind):
    """The JSON Schema `pattern` of `kind`. `^` and a final `(?![\\s\\S])` ("no character
    follows") mean the same in ECMA-262, in Rust's fancy-regex (jsonschema-rs) and in Python's
    `re.search` (the jsonschema library): `$` would let Python accept a final newline."""
    return "^(?:%s)(?![\\s\\S])" % PATTERNS[_kind(kind)]


def invisible_characters(text):
    """(offset, character) of every character INVISIBLE_RE finds in `text`."""
    return [(match.start(), match.group()[0]) for match in INVISIBLE_RE.finditer(text)]


def standby_clash(port, standby_port, others):
    """Why a consumer on `port` cannot have `standby_port` on a host whose other consumers are
    `others` ((name, port, standby_port) each): ("own", None), ("taken", other's name) when another
    consumer serves or stands by on it, ("shared", other's name) when another consumer shares
    `port` - the rules divert to the port's whole group, so a switch of one consumer would move the
    other's flows with it - or None."""
    if standby_port == port:
        return "own", None
    for name, other_port, other_standby in others:
        if standby_port in (other_port, other_standby):
            return "taken", name
    for name, other_port, _other_standby in others:
        if other_port == port:
            return "shared", name
    return None
