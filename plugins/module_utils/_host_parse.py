# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers of what FreeBSD prints: divert sockets (sockstat, pcblist), pf and ipfw rules.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`). Pure functions from command output to data: no command is run here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import itertools
import json
import re
import socket
import struct

from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError

# --- divert sockets ---------------------------------------------------------
# fact: `sockstat` reads net.inet.divert.pcblist and shows bound divert sockets as protocol
# `div4`, one row per socket and owning file descriptor (usr.bin/sockstat: protoname "div" plus
# "4" from inp_vflag). fact: net.inet.divert.pcblist lists bound divert sockets; the port is the
# xinpcb's local port (sys/netinet/ip_divert.c div_pcblist walks the bound-socket hash).


def _int(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_sockstat_json(text):
    """Rows of `sockstat -4 -P divert --libxo json`.

    libxo output of usr.bin/sockstat (display(), SOCKSTAT_XO_VERSION "1"):
    {"__version": "1", "sockstat": {"socket": [{"user": .., "command": .., "pid": .., "fd": ..,
    "proto": "div4", "local": {"address": "*", "port": 8000}, "foreign": {...}}]}}.
    Sockets no process holds have no user/command/pid/fd keys. Raises ValueError if not that.
    """
    document = json.loads(text)
    container = document.get("sockstat", document) if isinstance(document, dict) else None
    sockets = container.get("socket") if isinstance(container, dict) else None
    if not isinstance(sockets, list):
        raise ValueError("no sockstat.socket list in sockstat's JSON output")
    rows = []
    for item in sockets:
        if not isinstance(item, dict) or not str(item.get("proto", "")).startswith("div"):
            continue
        local = item.get("local") if isinstance(item.get("local"), dict) else {}
        port = _int(local.get("port"))
        if port is None:
            continue
        rows.append({"port": port, "pid": _int(item.get("pid")), "command": item.get("command"),
                     "user": item.get("user"), "fd": _int(item.get("fd"))})
    return rows


def parse_sockstat_text(text):
    """Rows of plain `sockstat -4 -P divert`.

    Columns (usr.bin/sockstat display()): USER COMMAND PID FD PROTO LOCAL-ADDRESS FOREIGN-ADDRESS,
    e.g. `root     divert-ref 1234  3 div4   *:8000                *:*`. COMMAND is cut to 10
    characters and may hold spaces, so the row is read from the right. Rows no process holds show
    `??` in the first four columns. The local address is `ADDR:PORT`.
    """
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[0] == "USER":
            continue
        proto, local = fields[-3], fields[-2]
        if not proto.startswith("div") or ":" not in local:
            continue
        port = _int(local.rsplit(":", 1)[1])
        if port is None:
            continue
        pid = _int(fields[-5])
        command = " ".join(fields[1:-5])
        rows.append({"port": port, "pid": pid, "command": None if command == "??" else command,
                     "user": None if fields[0] == "??" else fields[0], "fd": _int(fields[-4])})
    return rows


def parse_pcblist(text):
    """Rows (ports only) of `sysctl -x net.inet.divert.pcblist`.

    sysctl prints opaque values as `NAME: Format:S,xinpcb Length:N Dump:0x<hex>`. The buffer
    (ip_divert.c div_pcblist) is a struct xinpgen, one struct xinpcb per bound socket, and a
    closing xinpgen. Each record starts with its own length (ksize_t, 8 bytes); an xinpcb is
    `ksize_t xi_len; struct xsocket xi_socket; struct in_conninfo inp_inc; ...` and xsocket
    starts with its own length xso_len, so the local port (inc_ie.ie_lport, network byte
    order, after inc_flags, inc_len, inc_fibnum and ie_fport) is at 8 + xso_len + 6, whatever
    the release's structure sizes. Host byte order is little-endian on the platforms the
    project targets (amd64, arm64); big-endian lengths are tried when little-endian ones do not
    fit.
    """
    match = re.search(r"Dump:0x([0-9a-fA-F]*)", text)
    if not match:
        raise ValueError("no Dump:0x in sysctl output (run sysctl with -x)")
    data = binascii.unhexlify(match.group(1))
    for order in ("<", ">"):
        rows = _walk_pcblist(data, order)
        if rows is not None:
            return rows
    raise ValueError("net.inet.divert.pcblist: records do not add up to the buffer length")


def _walk_pcblist(data, order):
    if len(data) < 16:
        return [] if not data else None
    head_len = struct.unpack(order + "Q", data[:8])[0]
    if head_len < 16 or head_len > len(data):
        return None
    rows = []
    offset = head_len
    while offset + 8 <= len(data):
        record_len = struct.unpack(order + "Q", data[offset:offset + 8])[0]
        if record_len == head_len:  # the closing xinpgen
            return rows
        if record_len < 24 or offset + record_len > len(data):
            return None
        xso_len = struct.unpack(order + "Q", data[offset + 8:offset + 16])[0]
        lport_at = offset + 8 + xso_len + 6
        if xso_len < 8 or lport_at + 2 > offset + record_len:
            return None
        port = struct.unpack("!H", data[lport_at:lport_at + 2])[0]
        # xsocket's second field, xso_so, is the kernel address of the socket: one record per
        # socket, however many processes hold a descriptor of it.
        socket_address = struct.unpack(order + "Q", data[offset + 16:offset + 24])[0] if xso_len >= 16 else None
        rows.append({"port": port, "pid": None, "command": None, "user": None, "fd": None,
                     "socket": socket_address})
        offset += record_len
    return None


def summarise(rows):
    """{port: {"port", "bound", "pids", "commands"}} from socket rows; port 0 (unbound) skipped.

    Rows that name their socket (pcblist's xso_so) count once per socket; sockstat's rows are
    one per process and descriptor, so a socket that a forked child shares counts twice there.
    """
    table = {}
    seen = set()
    for row in rows:
        if not row["port"]:
            continue
        entry = table.setdefault(row["port"], {"port": row["port"], "bound": 0, "pids": [], "commands": []})
        if row.get("socket") is not None:
            if row["socket"] in seen:
                continue
            seen.add(row["socket"])
        entry["bound"] += 1
        if row.get("pid") is not None and row["pid"] not in entry["pids"]:
            entry["pids"].append(row["pid"])
        if row.get("command") and row["command"] not in entry["commands"]:
            entry["commands"].append(row["command"])
    for entry in table.values():
        entry["pids"].sort()
        entry["commands"].sort()
    return table


# --- pf rules: the canonical form -------------------------------------------
# pfctl prints loaded rules in its own form (sbin/pfctl/pfctl_parser.c print_rule): lists in
# `{ }` are expanded into one rule per combination (parse.y expand_rule, in the order
# interface, proto, source, source port, destination, destination port), ports print as
# `port = 80` (names from /etc/services unless numeric), ranges `port 1000:2000`, `from any to
# any` with no ports prints `all`, stateful pass rules carry the default `flags S/SA` (tcp or no
# protocol), `keep state` is printed, a /32 host prints without the mask, and FreeBSD prints
# `divert-to PORT` (the host is ignored). Both the wanted text and pfctl's output are put into
# this one canonical form before they are compared.

_PF_TOKEN = re.compile(r'"[^"]*"|[{},]|[^\s{},"]+')
_PF_ACTIONS = ("pass", "block", "match")
_PF_AFTER_STATE = ("label", "tag", "divert-to", "rtable", "queue", "ridentifier", "tagged")
_PF_PORT_OPS = ("=", "!=", "<", "<=", ">", ">=", "<>", "><")
_SERVICES = {"http": 80, "https": 443, "domain": 53, "ssh": 22, "smtp": 25, "ntp": 123, "ftp": 21,
             "telnet": 23, "imap": 143, "pop3": 110, "snmp": 161, "ldap": 389, "submission": 587,
             "imaps": 993, "pop3s": 995, "bootps": 67, "bootpc": 68, "tftp": 69, "syslog": 514}


def _logical_lines(text):
    """Lines with comments and continuations removed."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _strip_comment(line):
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def _expand_lists(tokens):
    """Every combination of the `{ a, b }` lists of a rule, in textual order (outermost first)."""
    parts = []  # each a list of alternatives, each alternative a list of tokens
    index = 0
    while index < len(tokens):
        if tokens[index] == "{":
            end = tokens.index("}", index)
            items = [t for t in tokens[index + 1:end] if t != ","]
            parts.append([[item] for item in items] or [[]])
            index = end + 1
        else:
            parts.append([[tokens[index]]])
            index += 1
    return [list(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts)]


def _service_port(name, proto):
    if name.isdigit():
        return name
    try:
        return str(socket.getservbyname(name, proto or "tcp"))
    except (OSError, socket.error):
        return str(_SERVICES.get(name, name))


def _pf_canonical_rule(tokens):
    out = []
    proto = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "proto" and index + 1 < len(tokens):
            proto = tokens[index + 1]
            out += [token, proto]
            index += 2
            continue
        if token == "port" and index + 1 < len(tokens):
            value = tokens[index + 1]
            if value in _PF_PORT_OPS and index + 2 < len(tokens):
                if value in ("<>", "><"):
                    out += ["port", tokens[index + 2], value, tokens[index + 3]]
                    index += 4
                    continue
                out += ["port", value, _service_port(tokens[index + 2], proto)]
                index += 3
                continue
            if ":" in value:
                out += ["port", value]
            else:
                out += ["port", "=", _service_port(value, proto)]
            index += 2
            continue
        if token == "divert-to" and index + 1 < len(tokens):
            # FreeBSD ignores the host of `divert-to HOST port N` and prints `divert-to N`.
            if index + 3 < len(tokens) and tokens[index + 2] == "port":
                out += ["divert-to", tokens[index + 3]]
                index += 4
            else:
                out += ["divert-to", tokens[index + 1]]
                index += 2
            continue
        if "/" in token and re.match(r"^[0-9.]+/32$", token):
            token = token[:-3]
        elif "/" in token and re.match(r"^[0-9a-fA-F:]+/128$", token):
            token = token[:-4]
        out.append(token)
        index += 1
    # `from any to any` without ports is printed `all`.
    text = " ".join(out)
    text = re.sub(r"\bfrom any to any(?= |$)(?! port)", "all", text)
    out = text.split(" ")
    # The default `flags S/SA` of stateful rules carries no information.
    for index in range(len(out) - 1):
        if out[index] == "flags" and out[index + 1] == "S/SA":
            del out[index:index + 2]
            break
    if out and out[0] == "pass" and not any(
            " ".join(out[i:i + 2]) in ("no state", "keep state", "modulate state", "synproxy state")
            for i in range(len(out) - 1)):
        # pf keeps state on pass rules by default and pfctl prints `keep state`.
        stop = next((i for i, t in enumerate(out) if t in _PF_AFTER_STATE), len(out))
        out[stop:stop] = ["keep", "state"]
    return " ".join(out)


def pf_canonical(text):
    """The canonical rules of a pf rules text (wanted or printed by pfctl), one string each."""
    rules = []
    for line in _logical_lines(text):
        tokens = _PF_TOKEN.findall(line)
        if not tokens:
            continue
        if tokens[0] not in _PF_ACTIONS:
            rules.append(" ".join(tokens))
            continue
        for expanded in _expand_lists(tokens):
            rules.append(_pf_canonical_rule(expanded))
    return rules


def pf_divert_ports(text):
    """Ports the rules divert to (pf: `divert-to N` or `divert-to HOST port N`)."""
    ports = set()
    for rule in pf_canonical(text):
        match = re.search(r"\bdivert-to (\d+)\b", rule)
        if match:
            ports.add(int(match.group(1)))
    return ports


# --- ipfw rules: the canonical form -----------------------------------------
# `ipfw -S list` prints `NNNNN set S ACTION PROTO from SRC to DST OPTIONS` (sbin/ipfw/ipfw2.c
# show_static_rule: rule number `%05u`, the set with -S). ipfw prints the rule from its compiled
# opcodes, not as typed: with `ip4` present it prints `ip4` in the protocol position and the
# protocol later as `proto tcp`; ports may print with the address or as `dst-port`. Match
# conditions are ANDed, so the canonical form keeps the number and action and sorts the match
# conditions ("atoms"); both sides go through it.

_IPFW_PAIR_OPTIONS = ("via", "recv", "xmit", "proto", "dst-port", "src-port", "uid", "gid", "jail",
                      "setfib", "tag", "tagged", "icmptypes", "ipttl", "iplen", "ipid", "ipversion",
                      "tcpflags", "ipoptions", "lookup", "fib", "dscp", "tos", "limit")
_IPFW_ACTIONS_WITH_ARG = ("divert", "tee", "skipto", "pipe", "queue", "nat", "fwd", "forward", "call",
                          "setfib", "setdscp", "netgraph", "ngtee", "unreach", "unreach6", "tag")


def _ipfw_ports(token):
    return bool(re.match(r"^[0-9][0-9,\-]*$", token))


def _ipfw_addr(token):
    return token[:-3] if re.match(r"^[0-9.]+/32$", token) else token


def ipfw_parse_line(line):
    """(number, set, action, atoms) of an `add N set S ...` line or an `ipfw -S list` line.

    Returns None for lines that are not rules.
    """
    tokens = line.split("//", 1)[0].split()
    if tokens and tokens[0] == "add":
        tokens = tokens[1:]
    if not tokens or not tokens[0].isdigit():
        return None
    number = int(tokens[0])
    tokens = tokens[1:]
    rule_set = None
    if len(tokens) >= 2 and tokens[0] == "set" and tokens[1].isdigit():
        rule_set = int(tokens[1])
        tokens = tokens[2:]
    if not tokens:
        return None
    action = [tokens[0]]
    tokens = tokens[1:]
    if action[0] in _IPFW_ACTIONS_WITH_ARG and tokens:
        action.append(tokens[0])
        tokens = tokens[1:]
    atoms = []
    if tokens and tokens[0] not in ("from", "to"):
        proto = tokens[0]
        tokens = tokens[1:]
        if proto in ("ip4", "ipv4"):
            atoms.append("ip4")
        elif proto in ("ip6", "ipv6"):
            atoms.append("ip6")
        elif proto not in ("ip", "all"):
            atoms.append("proto %s" % proto)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("from", "to") and index + 1 < len(tokens):
            side = "src" if token == "from" else "dst"
            negate = tokens[index + 1] == "not"
            address = tokens[index + 2] if negate else tokens[index + 1]
            index += 3 if negate else 2
            atoms.append("%s %s%s" % (side, "not " if negate else "", _ipfw_addr(address)))
            if index < len(tokens) and _ipfw_ports(tokens[index]):
                atoms.append("%s-port %s" % (side, tokens[index]))
                index += 1
            continue
        if token in ("ip4", "ipv4"):
            atoms.append("ip4")
        elif token in ("ip6", "ipv6"):
            atoms.append("ip6")
        elif token in _IPFW_PAIR_OPTIONS and index + 1 < len(tokens):
            atoms.append("%s %s" % (token, tokens[index + 1]))
            index += 1
        else:
            atoms.append(token)
        index += 1
    return number, rule_set, " ".join(action), sorted(atoms)


def ipfw_canonical(text, rule_set=None):
    """Canonical rules (`NNNNN action | atoms`) of rules text or list output, limited to one set."""
    rules = []
    for line in text.splitlines():
        parsed = ipfw_parse_line(line.strip())
        if parsed is None:
            continue
        number, line_set, action, atoms = parsed
        if rule_set is not None and line_set is not None and line_set != rule_set:
            continue
        if number == 65535:
            continue
        rules.append("%05d %s | %s" % (number, action, " ".join(atoms)))
    return rules


def ipfw_divert_ports(text):
    ports = set()
    for line in text.splitlines():
        parsed = ipfw_parse_line(line.strip())
        if parsed and parsed[2].split()[0] in ("divert", "tee") and parsed[2].split()[1].isdigit():
            ports.add(int(parsed[2].split()[1]))
    return ports


_IPFW_ADD = re.compile(r"^add\s+(\d+)\s+set\s+(\d+)\s+(.*)$")


def ipfw_add_lines(text, live_set, new_set):
    """The `add` lines of the wanted rules file, moved from `set LIVE` to `set NEW`.

    The controller renders the final form (`add N set LIVE ...`, _render.ipfw_lines); loading
    goes through the spare set, so the set number is rewritten here.
    """
    lines = []
    for line in _logical_lines(text):
        match = _IPFW_ADD.match(line)
        if not match:
            raise HostError("ipfw rules must be `add NUMBER set %d ...` lines, got: %s" % (live_set, line))
        if int(match.group(2)) != live_set:
            raise HostError("ipfw rule is in set %s but the host's set is %d: %s" % (match.group(2), live_set, line))
        lines.append("add %s set %d %s" % (match.group(1), new_set, match.group(3)))
    return lines


def ipfw_list_to_add_lines(list_output, live_set, new_set, drop_ports=()):
    """`add` lines re-creating the rules of `ipfw -S list` in `live_set`, into `new_set`.

    Rules diverting (or teeing) to a port in `drop_ports` are left out: this is how a port's
    rules are withdrawn while the others stay.
    """
    lines = []
    for line in list_output.splitlines():
        match = re.match(r"^(\d+)\s+set\s+(\d+)\s+(.*)$", line.strip())
        if not match or int(match.group(2)) != live_set:
            continue
        body = match.group(3).split("//", 1)[0].strip()
        words = body.split()
        if len(words) > 1 and words[0] in ("divert", "tee") and _int(words[1]) in drop_ports:
            continue
        lines.append("add %d set %d %s" % (int(match.group(1)), new_set, body))
    return lines


# --- pf states -------------------------------------------------------------------------------
# `pfctl -ss -vv` (sbin/pfctl/pf_print_state.c print_state): a state's first line starts in the
# first column (`all tcp A:P -> B:Q  STATE`); with -v follows `   age HH:MM:SS, expires in
# HH:MM:SS, P:P pkts, B:B bytes[, anchor N][, rule N]...`, with -vv `   id: %016jx creatorid: %08x`.
# `anchor` is the number of the anchor rule the state was created under and `rule` the number
# of the creating rule in that anchor's ruleset, both as they were when the state was created.

_STATE_AGE = re.compile(r"^\s+age (\d+):(\d+):(\d+),")
_STATE_ANCHOR = re.compile(r", anchor (\d+)")
_STATE_RULE = re.compile(r", rule (\d+)")
_STATE_ID = re.compile(r"^\s+id: ([0-9a-fA-F]+) creatorid: ([0-9a-fA-F]+)")


def parse_pf_states(text):
    """[{"id", "age", "anchor", "rule"}] of `pfctl -ss -vv` output (ages in seconds)."""
    states = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            states.append({"id": None, "age": None, "anchor": None, "rule": None})
            continue
        if not states:
            continue
        state = states[-1]
        match = _STATE_AGE.match(line)
        if match:
            hours, minutes, seconds = (int(part) for part in match.groups())
            state["age"] = hours * 3600 + minutes * 60 + seconds
            anchor, rule = _STATE_ANCHOR.search(line), _STATE_RULE.search(line)
            state["anchor"] = int(anchor.group(1)) if anchor else None
            state["rule"] = int(rule.group(1)) if rule else None
            continue
        match = _STATE_ID.match(line)
        if match:
            state["id"] = match.group(1).lower()
    return states


def pf_anchor_number(main_rules_text, anchor):
    """The number of `anchor "NAME"` in `pfctl -sr -vv` output (pfctl prints `@N ` before each
    rule with -vv), or None."""
    pattern = re.compile(r'^@(\d+)\s+anchor\s+"?%s"?(\s|$)' % re.escape(anchor))
    for line in main_rules_text.splitlines():
        match = pattern.match(line.strip())
        if match:
            return int(match.group(1))
    return None


def rewrite_divert_ports(text, mapping):
    """Rules text with each `divert-to P` (pf) or `divert P` / `tee P` (ipfw) moved to mapping[P]."""
    if not mapping:
        return text

    def pf(match):
        return "%s%d" % (match.group(1), mapping.get(int(match.group(2)), int(match.group(2))))
    text = re.sub(r"(\bdivert-to\s+)(\d+)\b", pf, text)
    return re.sub(r"(\bset\s+\d+\s+(?:divert|tee)\s+)(\d+)\b", pf, text)
