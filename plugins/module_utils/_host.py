# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host side of divert.fleet: divert sockets, rule transactions, consumers, boot gate.

Private to the divert.fleet collection. The modules divert_sockets, divert_rules and
divert_consumers only parse their arguments and call this file.

SELF-CONTAINED ON PURPOSE: this file imports nothing but the Python standard library (3.8+),
because its own source is also installed on every host as the boot-time gate program
/usr/local/libexec/divert-fleet-gate (invariant I3, see gate_main() at the end). Do not import
other module_utils here.

Every FreeBSD behaviour relied on is a fact of docs/freebsd-facts.md, named next to the check as
"fact: ...". Commands are run by their plain names from PATH (pfctl, ipfw, sockstat, sysctl,
kldload, kldstat, sysrc, service, configctl); files are FreeBSD absolute paths, optionally
below a `root` prefix (the unit tests use a temporary directory as root).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import difflib
import hashlib
import itertools
import json
import os
import re
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import time

STATE_DIR = "/var/db/divert_fleet"
STATE_FILE = STATE_DIR + "/state.json"
RULES_FILE = STATE_DIR + "/rules"
CONSUMERS_FILE = STATE_DIR + "/consumers.json"
GATE_PATH = "/usr/local/libexec/divert-fleet-gate"
GATE_RC_SCRIPT = "/usr/local/etc/rc.d/divert_fleet"
OPNSENSE_PLUGIN = "/usr/local/etc/inc/plugins.inc.d/divert_fleet.inc"
OPNSENSE_SYSHOOK = "/usr/local/etc/rc.syshook.d/start/50-divert_fleet"
PF_CONF = "/etc/pf.conf"
REFLECTOR_PATH = "/usr/local/libexec/divert-reflector"
RC_D = "/usr/local/etc/rc.d"
PYTHON = "/usr/local/bin/python3"
DEFAULT_ANCHOR = "divert_fleet"
DEFAULT_GATE_TIMEOUT = 300


class HostError(Exception):
    """A failure to report to the operator; `details` go into the module result."""

    def __init__(self, message, **details):
        super(HostError, self).__init__(message)
        self.message = message
        self.details = details


class IpfwNotRunning(HostError):
    """ipfw.ko is not loaded: there are no ipfw rules to read, and none can be loaded."""


class GroupTimeout(HostError):
    """Divert groups did not become whole in time."""


# --- commands and files -----------------------------------------------------

class Runner:
    """Runs a command (plain name, found on PATH) and returns (rc, stdout, stderr)."""

    def run(self, argv, data=None):
        env = dict(os.environ, LC_ALL="C", LANG="C")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            return 127, "", "%s: %s" % (argv[0], exc)
        out, err = proc.communicate(data.encode("utf-8") if data is not None else None)
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class FreeBSDHost:
    """The host the code runs on: commands through a runner, files below `root`.

    `sleep` and `clock` are injectable so that waiting can be tested without waiting.
    """

    def __init__(self, runner=None, root="/", sleep=time.sleep, clock=time.monotonic, name=None):
        self.runner = runner or Runner()
        self.root = root
        self.sleep = sleep
        self.clock = clock
        self.name = name or socket.gethostname()
        self.commands = []  # every command run, for the module result

    def run(self, argv, data=None):
        argv = [str(a) for a in argv]
        self.commands.append(" ".join(argv))
        return self.runner.run(argv, data=data)

    def run_ok(self, argv, what, data=None):
        rc, out, err = self.run(argv, data=data)
        if rc != 0:
            raise HostError("%s failed on %s: `%s` exited %d: %s"
                            % (what, self.name, " ".join(str(a) for a in argv), rc, (err or out).strip()),
                            command=" ".join(str(a) for a in argv), rc=rc, stdout=out, stderr=err)
        return out

    def path(self, abs_path):
        return os.path.join(self.root, abs_path.lstrip("/"))

    def read_file(self, abs_path):
        try:
            with open(self.path(abs_path), "r") as handle:
                return handle.read()
        except (IOError, OSError):
            return None

    def write_file(self, abs_path, content, mode=0o644):
        """Atomically replace a file (temporary file in the same directory, then rename)."""
        target = self.path(abs_path)
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".divert_fleet.", dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.chmod(tmp, mode)
            os.rename(tmp, target)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def ensure_file(self, abs_path, content, mode=0o644, check_mode=False):
        """Write the file if its content or mode differ; True if it changed (or would)."""
        current = self.read_file(abs_path)
        same_mode = current is not None and (os.stat(self.path(abs_path)).st_mode & 0o7777) == mode
        if current == content and same_mode:
            return False
        if not check_mode:
            self.write_file(abs_path, content, mode)
        return True

    def remove_file(self, abs_path, check_mode=False):
        target = self.path(abs_path)
        if not os.path.exists(target):
            return False
        if not check_mode:
            os.unlink(target)
        return True

    def scratch_file(self, content):
        """A temporary file for a command to read (pfctl -f, ipfw FILE); the caller removes it."""
        fd, tmp = tempfile.mkstemp(prefix="divert_fleet.", suffix=".rules")
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return tmp


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# --- divert sockets ---------------------------------------------------------
# fact: `sockstat` reads net.inet.divert.pcblist and shows bound divert sockets as protocol
# `div4`, one row per socket and owning file descriptor (usr.bin/sockstat: protoname "div" plus
# "4" from inp_vflag). fact: net.inet.divert.pcblist lists bound divert sockets; the port is the
# xinpcb's local port (sys/netinet/ip_divert.c div_pcblist walks the bound-socket hash).

SOCKSTAT_JSON = ["sockstat", "-4", "-P", "divert", "--libxo", "json"]
SOCKSTAT_TEXT = ["sockstat", "-4", "-P", "divert"]
SYSCTL_PCBLIST = ["sysctl", "-x", "net.inet.divert.pcblist"]


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
        rows.append({"port": port, "pid": None, "command": None, "user": None, "fd": None})
        offset += record_len
    return None


def summarise(rows):
    """{port: {"port", "bound", "pids", "commands"}} from socket rows; port 0 (unbound) skipped."""
    table = {}
    for row in rows:
        if not row["port"]:
            continue
        entry = table.setdefault(row["port"], {"port": row["port"], "bound": 0, "pids": [], "commands": []})
        entry["bound"] += 1
        if row.get("pid") is not None and row["pid"] not in entry["pids"]:
            entry["pids"].append(row["pid"])
        if row.get("command") and row["command"] not in entry["commands"]:
            entry["commands"].append(row["command"])
    for entry in table.values():
        entry["pids"].sort()
        entry["commands"].sort()
    return table


def _try_read_divert_sockets(host):
    """The divert socket table, or {} where it cannot be read (e.g. ipdivert not loaded yet)."""
    try:
        return read_divert_sockets(host)[0]
    except HostError:
        return {}


def read_divert_sockets(host):
    """(table, source): bound divert sockets per port, as the kernel reports them.

    Tries sockstat's libxo JSON (FreeBSD 15 and later), then plain sockstat (older releases
    have no --libxo), then the raw pcblist. Counts are rows, i.e. (socket, descriptor) pairs:
    a socket inherited by a child process would count once per process.
    """
    errors = []
    for argv, parser, source in ((SOCKSTAT_JSON, parse_sockstat_json, "sockstat-json"),
                                 (SOCKSTAT_TEXT, parse_sockstat_text, "sockstat"),
                                 (SYSCTL_PCBLIST, parse_pcblist, "pcblist")):
        rc, out, err = host.run(argv)
        if rc != 0:
            errors.append("`%s` exited %d: %s" % (" ".join(argv), rc, err.strip()))
            continue
        try:
            return summarise(parser(out)), source
        except ValueError as exc:
            errors.append("`%s`: %s" % (" ".join(argv), exc))
    raise HostError("cannot read divert sockets on %s: %s" % (host.name, "; ".join(errors)))


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


def wait_for_groups(host, expected, timeout, interval=0.1, max_interval=1.0):
    """Poll until every port has exactly its expected bound sockets; return the socket table.

    `timeout` is seconds for every port, or a mapping port -> seconds (each consumer's
    `ready_timeout`). Raises GroupTimeout, as soon as a port that is still incomplete is past its
    own timeout, naming host, port, expected and bound counts. Exact, not at least: I1 wants the
    group to be exactly the declared size (more sockets would be a foreign member).
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
    while True:
        table, source = read_divert_sockets(host)
        polls += 1
        missing = incomplete_groups(table, expected)
        if not missing:
            return table, source, polls
        now = host.clock()
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


# --- diff helpers -------------------------------------------------------------

def text_diff(before, after, before_header, after_header):
    return {"before": before, "after": after, "before_header": before_header, "after_header": after_header}


def unified(before_lines, after_lines):
    return "\n".join(difflib.unified_diff(before_lines, after_lines, "loaded", "wanted", lineterm=""))


# --- backends -------------------------------------------------------------------

class PfBackend:
    """One pf anchor. fact: `pfctl -a NAME -f FILE` replaces one anchor's rules in one
    transaction; `pfctl -n` parses without loading; loading the main ruleset does not touch
    rules loaded into other anchors."""

    name = "pf"

    def __init__(self, host, anchor):
        self.host = host
        self.anchor = anchor
        self.module_loaded = True  # until pfctl says /dev/pf is missing

    def ensure_module(self, check_mode):
        """fact: pf.ko may not be loaded on a fresh FreeBSD host (no /dev/pf). Loading it does not
        filter anything until `pfctl -e`, and pf's default is to pass, so it is safe to load here;
        rc.conf's pf_enable loads it at boot."""
        if self.module_loaded:
            return []
        if not check_mode:
            self.host.run_ok(["kldload", "pf"], "loading pf.ko")
            self.module_loaded = True
        return ["kldload pf"]

    def check(self, text):
        if not self.module_loaded:
            return  # check mode on a host without pf.ko: pfctl cannot parse without /dev/pf
        path = self.host.scratch_file(text)
        try:
            self.host.run_ok(["pfctl", "-o", "none", "-a", self.anchor, "-nf", path],
                             "syntax check of the pf rules for anchor %s" % self.anchor)
        finally:
            _unlink(path)

    def loaded_text(self):
        rc, out, err = self.host.run(["pfctl", "-a", self.anchor, "-s", "rules"])
        if rc != 0:
            if "/dev/pf" in err:  # pf.ko not loaded: no anchor can hold anything
                self.module_loaded = False
                return ""
            # An anchor nothing was ever loaded into does not exist yet: pfctl fails with EINVAL.
            if "Invalid argument" in err or "No such file" in err:
                return ""
            raise HostError("reading the rules of pf anchor %s failed on %s: %s"
                            % (self.anchor, self.host.name, err.strip()), stderr=err)
        return out

    def canonical(self, text):
        return pf_canonical(text)

    def divert_ports(self, text):
        return pf_divert_ports(text)

    def load(self, text):
        path = self.host.scratch_file(text)
        try:
            # -o none: no optimizer, so the loaded rules read back as written (the basic
            # optimizer may merge address lists into automatic tables).
            self.host.run_ok(["pfctl", "-o", "none", "-a", self.anchor, "-f", path],
                             "loading pf anchor %s" % self.anchor)
        finally:
            _unlink(path)

    def flush(self):
        self.host.run_ok(["pfctl", "-a", self.anchor, "-F", "rules"], "flushing pf anchor %s" % self.anchor)

    def without_ports(self, loaded_text, ports):
        """The loaded rules minus those diverting to `ports`, as a loadable text."""
        keep = [line for line in loaded_text.splitlines()
                if line.strip() and not (pf_divert_ports(line) & set(ports))]
        return "\n".join(keep) + ("\n" if keep else "")

    def withdraw_ports(self, ports, check_mode=False):
        """Reload the anchor without the rules diverting to `ports`; the withdrawn rules."""
        loaded = self.loaded_text()
        withdrawn = [line.strip() for line in loaded.splitlines()
                     if line.strip() and pf_divert_ports(line) & set(ports)]
        if withdrawn and not check_mode:
            remaining = self.without_ports(loaded, ports)
            if remaining.strip():
                self.load(remaining)
            else:
                self.flush()
        return withdrawn


class IpfwBackend:
    """One ipfw set with a spare. fact: rules 1..65534 in sets 0..31, `ipfw set swap A B` swaps
    two sets atomically; a rules file is run as `ipfw -q /abs/path`, one command per line; `-n`
    checks syntax only."""

    name = "ipfw"

    def __init__(self, host, rule_set, spare_set):
        self.host = host
        self.rule_set = rule_set
        self.spare_set = spare_set
        if rule_set == spare_set or 31 in (rule_set, spare_set):
            raise HostError("ipfw set %d and spare set %d must differ and not be 31 (flush spares set 31)"
                            % (rule_set, spare_set))

    def ensure_module(self, check_mode):
        """ipfw is never started here: its default rule denies everything (see list_output)."""
        return []

    def check(self, text):
        lines = ipfw_add_lines(text, self.rule_set, self.spare_set)
        if not lines:
            return
        path = self.host.scratch_file("\n".join(lines) + "\n")
        try:
            self.host.run_ok(["ipfw", "-n", "-q", path], "syntax check of the ipfw rules")
        finally:
            _unlink(path)

    def list_output(self):
        rc, out, err = self.host.run(["ipfw", "-S", "list"])
        if rc != 0 and "Protocol not available" in err:
            # ipfw.ko absent (ENOPROTOOPT from the IP_FW3 sockopt). Loading it here would apply its
            # default rule, which denies everything unless the operator chose otherwise at boot:
            # enabling ipfw is the operator's decision, not a side effect of a divert rollout.
            raise IpfwNotRunning(
                "ipfw is not running on %s (ipfw.ko is not loaded): enable it with your own ruleset first "
                "(firewall_enable=YES and firewall_script or firewall_type in rc.conf, then service ipfw "
                "start); divert.fleet does not start ipfw, whose default rule denies all traffic" % self.host.name,
                command="ipfw -S list", rc=rc, stderr=err)
        if rc != 0:
            raise HostError("listing ipfw rules failed on %s: `ipfw -S list` exited %d: %s"
                            % (self.host.name, rc, (err or out).strip()), command="ipfw -S list", rc=rc, stderr=err)
        return out

    def loaded_text(self):
        return "\n".join(line for line in self.list_output().splitlines()
                         if re.match(r"^\d+\s+set\s+%d\s" % self.rule_set, line.strip())) + "\n"

    def canonical(self, text):
        return ipfw_canonical(text, self.rule_set)

    def divert_ports(self, text):
        return ipfw_divert_ports(text)

    def _swap_in(self, add_lines):
        """Load `add_lines` (already in the spare set) and swap them live, in one ipfw run.

        Sequence: empty and disable the spare set, add, swap, delete the spare set (which then
        holds the old rules). `ipfw -q FILE` stops at the first failing line; -f keeps a
        delete of an empty set from stopping it. On failure the spare set is deleted: before
        the swap it holds the partial new rules, after it the old ones, so the live set is
        never left half-loaded (I4).
        """
        script = ["delete set %d" % self.spare_set, "set disable %d" % self.spare_set]
        script += add_lines
        script += ["set swap %d %d" % (self.rule_set, self.spare_set), "delete set %d" % self.spare_set,
                   "set enable %d" % self.spare_set]
        path = self.host.scratch_file("\n".join(script) + "\n")
        try:
            rc, out, err = self.host.run(["ipfw", "-f", "-q", path])
        finally:
            _unlink(path)
        if rc != 0:
            self.host.run(["ipfw", "-f", "-q", "delete", "set", str(self.spare_set)])
            raise HostError("loading ipfw set %d through spare set %d failed on %s (spare set deleted, "
                            "live set untouched): %s" % (self.rule_set, self.spare_set, self.host.name,
                                                         (err or out).strip()), stderr=err)

    def load(self, text):
        self._swap_in(ipfw_add_lines(text, self.rule_set, self.spare_set))

    def flush(self):
        self.host.run_ok(["ipfw", "-f", "-q", "delete", "set", str(self.rule_set)],
                         "deleting ipfw set %d" % self.rule_set)

    def withdraw_ports(self, ports, check_mode=False):
        try:
            listing = self.list_output()
        except IpfwNotRunning:
            return []  # without ipfw nothing diverts: there is nothing to withdraw
        withdrawn = [line.strip() for line in listing.splitlines()
                     if re.match(r"^\d+\s+set\s+%d\s" % self.rule_set, line.strip())
                     and ipfw_divert_ports(line) & set(ports)]
        if withdrawn and not check_mode:
            remaining = ipfw_list_to_add_lines(listing, self.rule_set, self.spare_set, drop_ports=ports)
            if remaining:
                self._swap_in(remaining)
            else:
                self.flush()
        return withdrawn


def make_backend(host, backend, anchor=DEFAULT_ANCHOR, rule_set=5, spare_set=6):
    if backend == "pf":
        return PfBackend(host, anchor)
    if backend == "ipfw":
        return IpfwBackend(host, rule_set, spare_set)
    raise HostError("unknown backend %r (pf or ipfw)" % backend)


# --- pf main ruleset: the anchor reference ---------------------------------------

def _anchor_line_re(anchor):
    return re.compile(r'^\s*anchor\s+"?%s"?(\s|$)' % re.escape(anchor), re.M)


def ensure_pf_enabled(host, check_mode):
    """`pfctl -e` if `pfctl -s info` says Disabled (print_status: `Status: Enabled|Disabled`)."""
    out = host.run_ok(["pfctl", "-s", "info"], "reading pf status")
    match = re.search(r"Status:\s+(Enabled|Disabled)", out)
    if match and match.group(1) == "Enabled":
        return False
    if not check_mode:
        host.run_ok(["pfctl", "-e"], "enabling pf")
    return True


def ensure_rc_var(host, name, value, check_mode):
    current = sysrc_values(host, [name]).get(name)
    if current == value:
        return False
    if not check_mode:
        host.run_ok(["sysrc", "%s=%s" % (name, value)], "setting %s in rc.conf" % name)
    return True


def ensure_freebsd_anchor_reference(host, anchor, check_mode):
    """/etc/pf.conf references the anchor and the loaded main ruleset does too.

    The line is appended at the end of pf.conf (pf.conf wants filter rules after options,
    normalisation, queueing and translation). The anchor's rules are `quick` pass rules: placed
    last, they decide for packets no earlier `quick` rule of the operator took (placement is a
    security decision, freebsd-facts.md). Main ruleset reloads do not touch the anchor's rules.
    """
    changes = []
    conf = host.read_file(PF_CONF) or ""
    if not _anchor_line_re(anchor).search(conf):
        candidate = conf + ("" if conf.endswith("\n") or not conf else "\n")
        candidate += '# divert.fleet: divert rules, loaded with pfctl -a %s\nanchor "%s"\n' % (anchor, anchor)
        path = host.scratch_file(candidate)
        try:
            host.run_ok(["pfctl", "-nf", path], "syntax check of %s with the anchor added" % PF_CONF)
        finally:
            _unlink(path)
        if not check_mode:
            host.write_file(PF_CONF, candidate, 0o644)
        changes.append("added anchor \"%s\" to %s" % (anchor, PF_CONF))
    main = host.run_ok(["pfctl", "-s", "rules"], "reading the main pf ruleset")
    if changes or not re.search(r'^anchor "%s"' % re.escape(anchor), main, re.M):
        if not check_mode:
            host.run_ok(["pfctl", "-f", PF_CONF], "loading %s" % PF_CONF)
        changes.append("loaded %s" % PF_CONF)
    return changes


def opnsense_plugin(anchor):
    return (
        "<?php\n\n"
        "/*\n"
        " * Installed by the divert.fleet Ansible collection. Registers the divert anchor at the head\n"
        " * of the filter rules, so that `configctl filter reload` keeps it; its rules are loaded\n"
        " * separately with `pfctl -a %s -f`.\n"
        " */\n\n"
        "function divert_fleet_firewall($fw)\n"
        "{\n"
        "    $fw->registerAnchor('%s', 'fw', 0, 'head', true);\n"
        "}\n" % (anchor, anchor))


def ensure_opnsense_anchor_reference(host, anchor, check_mode):
    """OPNsense: a plugins.inc.d hook registers the anchor (Plugin::registerAnchor($name, $type,
    $priority, $placement, $quick)); `configctl filter reload` when the hook changed."""
    changes = []
    if host.ensure_file(OPNSENSE_PLUGIN, opnsense_plugin(anchor), 0o644, check_mode):
        changes.append("installed %s" % OPNSENSE_PLUGIN)
        if not check_mode:
            host.run_ok(["configctl", "filter", "reload"], "reloading the OPNsense filter")
        changes.append("configctl filter reload")
    return changes


# --- applying a host's rules ---------------------------------------------------

def apply_rules(host, backend, rules, groups, state="present", platform="freebsd", check_mode=False,
                boot_gate=True, gate_timeout=DEFAULT_GATE_TIMEOUT, manage_main_ruleset=True):
    """Bring the host's divert rules to `rules` (or withdraw them) in one transaction.

    Order: syntax check (nothing changes on failure) -> compare with what is loaded -> if
    different, check the kernel's divert sockets against `groups` and refuse if any port the
    rules divert to is not whole (I1, defence in depth) -> load (pf anchor or ipfw spare set
    and swap, I4) -> read back and compare. Then the main ruleset's anchor reference and pf
    enabled, and the boot gate's stored copy (I3).
    """
    groups = dict((int(port), int(count)) for port, count in (groups or {}).items())
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
    result["diff"] = text_diff("\n".join(before) + ("\n" if before else ""),
                               "\n".join(wanted) + ("\n" if wanted else ""),
                               "%s loaded (canonical)" % backend.name, "%s wanted (canonical)" % backend.name)
    result["rules"] = wanted
    if backend.name == "pf" and manage_main_ruleset and state == "present":
        if platform == "opnsense":
            main_changes = ensure_opnsense_anchor_reference(host, backend.anchor, check_mode)
        else:
            main_changes = ensure_freebsd_anchor_reference(host, backend.anchor, check_mode)
            if ensure_rc_var(host, "pf_enable", "YES", check_mode):
                main_changes.append("pf_enable=YES in rc.conf")
        if ensure_pf_enabled(host, check_mode):
            main_changes.append("pfctl -e")
        result["actions"] += main_changes
        result["changed"] = result["changed"] or bool(main_changes)
    if boot_gate:
        gate_changes = install_boot_gate(host, backend, rules if state == "present" else "", groups,
                                         platform, gate_timeout, check_mode)
        result["boot_gate"] = gate_changes
        result["changed"] = result["changed"] or bool(gate_changes)
    return result


# --- the boot gate (I3) --------------------------------------------------------

def module_source():
    """This file's source text, also from inside an AnsiballZ zip (zipimport's get_source)."""
    loader = globals().get("__loader__")
    source = None
    if loader is not None and hasattr(loader, "get_source"):
        try:
            source = loader.get_source(__name__)
        except Exception:
            source = None
    if isinstance(source, bytes):  # some loaders (Ansible's collection loader) return bytes
        source = source.decode("utf-8")
    if source is None:
        with open(__file__, "r") as handle:
            source = handle.read()
    return source


def gate_program():
    """The gate program: this file with a FreeBSD python shebang."""
    source = module_source()
    if source.startswith("#!"):
        source = source.split("\n", 1)[1]
    return "#!%s\n%s" % (PYTHON, source)


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


def install_boot_gate(host, backend, rules, groups, platform, timeout, check_mode):
    """Store the wanted rules and groups, install the gate program, its rc.d script (and the
    OPNsense syshook), enable it. Returns what changed."""
    changed = []
    files = [
        (RULES_FILE, rules, 0o600),
        (STATE_FILE, gate_state(backend, groups, platform, timeout, bool(rules.strip())), 0o600),
        (GATE_PATH, gate_program(), 0o755),
        (GATE_RC_SCRIPT, gate_rc_script(), 0o755),
    ]
    if platform == "opnsense":
        files.append((OPNSENSE_SYSHOOK, gate_syshook(), 0o755))
    for path, content, mode in files:
        if host.ensure_file(path, content, mode, check_mode):
            changed.append(path)
    if ensure_rc_var(host, "divert_fleet_enable", "YES", check_mode):
        changed.append("divert_fleet_enable=YES")
    return changed


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
        text = host.read_file(args.state)
        if text is None:
            log("no state file %s: nothing to load" % args.state)
            return 0
        state = json.loads(text)
        backend = make_backend(host, state["backend"], state.get("anchor", DEFAULT_ANCHOR),
                               state.get("set", 5), state.get("spare_set", 6))
        groups = dict((int(port), int(count)) for port, count in state.get("groups", {}).items())
        rules = host.read_file(state["rules_file"]) if state.get("rules_file") else ""
        if not (rules or "").strip():
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
        apply_rules(host, backend, rules, groups, platform=state.get("platform", "freebsd"),
                    boot_gate=False, manage_main_ruleset=False)
        log("divert rules loaded: groups whole on port(s) %s" % ", ".join(map(str, sorted(ports))))
        return 0
    except HostError as exc:
        log(exc.message)
        return 1


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


# --- consumers -------------------------------------------------------------------

def sysrc_values(host, names):
    """Current rc.conf values: `sysrc -e NAME...` prints `NAME="value"` per set variable
    (unset ones go to stderr and are absent here)."""
    if not names:
        return {}
    rc, out, err = host.run(["sysrc", "-e"] + list(names))
    values = {}
    for line in out.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or name not in names:
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw]
        values[name] = " ".join(parts)
    return values


def reflector_rc_script(service):
    """rc.d script of a reference consumer; reads ${name}_port, ${name}_sockets, ${name}_user."""
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
""" % {"name": service, "python": PYTHON, "program": REFLECTOR_PATH}


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
            script_changed = host.ensure_file("%s/%s" % (RC_D, service), reflector_rc_script(service), 0o755,
                                              check_mode)
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


if __name__ == "__main__":
    raise SystemExit(gate_main())
