"""pf rule parser, printer and evaluator of the twin.

Written from pf's grammar (sbin/pfctl/parse.y: pfrule, fromto, ipportspec, portspec,
filter_opts) and pfctl's printer (sbin/pfctl/pfctl_parser.c: print_rule, print_fromto),
never from the project's renderers.  Only the subset a divert rule set needs is understood;
anything else is a "syntax error" as pfctl would print it (with file name and line).
"""
import ipaddress
import re

SERVICES = {"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80,
            "pop3": 110, "ntp": 123, "imap": 143, "https": 443, "imaps": 993,
            "submission": 587, "mysql": 3306, "postgresql": 5432, "http-alt": 8080}
PORTNAMES = {v: k for k, v in SERVICES.items()}
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmp6": 58, "gre": 47,
          "esp": 50, "ah": 51, "sctp": 132, "carp": 112, "pfsync": 240}
PROTONAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 47: "gre", 50: "esp",
              51: "ah", 132: "sctp", 112: "carp", 240: "pfsync"}
IGNORED_STATEMENTS = {"scrub", "nat", "no", "rdr", "binat", "nat-anchor", "rdr-anchor",
                      "binat-anchor", "table", "altq", "queue", "load", "antispoof", "ether"}
IFNAMSIZ = 16                 # net/if.h: interface names hold at most 15 characters
PF_RULE_LABEL_SIZE = 64       # net/pfvar.h: labels hold at most 63 characters
# sbin/pfctl/pfctl_parser.c icmp_type[] and icmp6_type[] names (icmp-type / icmp6-type)
ICMP_TYPES = {"echorep", "unreach", "squench", "redir", "althost", "echoreq", "routeradv", "routersol",
              "timex", "paramprob", "timereq", "timerep", "inforeq", "inforep", "maskreq", "maskrep",
              "trace", "dataconv", "mobredir", "ipv6-where", "ipv6-here", "mobregreq", "mobregrep",
              "skip", "photuris"}
ICMP6_TYPES = {"unreach", "toobig", "timex", "paramprob", "echoreq", "echorep", "groupqry", "listqry",
               "grouprep", "listenrep", "groupterm", "listendone", "routersol", "routeradv", "neighbrsol",
               "neighbradv", "redir", "routrrenum", "wrureq", "wrurep", "fqdnreq", "fqdnrep", "niqry",
               "nirep", "mtraceresp", "mtrace"}


class Ruleset(list):
    """The rules of one file, and the interfaces its `set skip on` names (None: no set skip)."""

    skip = None


class PfError(Exception):
    """A parse error: .messages are the lines pfctl prints ("file:line: text")."""

    def __init__(self, messages):
        super().__init__("\n".join(messages))
        self.messages = messages


class Rule:
    def __init__(self):
        self.action = "pass"      # pass | block | anchor
        self.block_how = None     # drop | return ...
        self.anchor = None        # anchor name for an anchor call
        self.direction = None
        self.log = False
        self.quick = False
        self.ifname = None
        self.ifnot = False
        self.af = None            # 4 | 6 | None
        self.proto = None
        self.src = None           # (negated, ip_network) or None for any
        self.dst = None
        self.sport = None         # (op, a, b) or None
        self.dport = None
        self.flags = None         # (flags, flagset) strings
        self.state = None         # keep | modulate | synproxy | none | None (default)
        self.labels = []
        self.tag = None
        self.divert_port = 0
        self.icmp_type = None
        self.icmp_proto = None    # 1 for icmp-type, 58 for icmp6-type
        self.where = ""           # the anchor the rule was loaded into ("" = main ruleset)
        self.lineno = 0
        self.nr = 0
        # counters (per rule, as pf keeps them)
        self.evaluations = 0
        self.packets = [0, 0]
        self.bytes = [0, 0]
        self.states_cur = 0
        self.states_tot = 0

    # --- state defaults, as parse.y sets them -----------------------------------------
    def finish(self):
        if self.action == "pass" and self.state is None:
            self.state = "keep"   # pf >= 4.x: pass rules keep state by default
        if (self.action == "pass" and self.state in ("keep", "modulate", "synproxy")
                and self.flags is None and self.proto in (None, 6)):
            self.flags = ("S", "SA")

    @property
    def keep_state(self):
        return self.state in ("keep", "modulate", "synproxy")

    # --- printing as pfctl -s rules does -----------------------------------------------
    def text(self):
        out = []
        if self.action == "anchor":
            out.append('anchor "%s"' % self.anchor)
        else:
            out.append(self.action)
        if self.action == "block":
            out.append(self.block_how or "drop")
        if self.direction:
            out.append(self.direction)
        if self.log:
            out.append("log")
        if self.quick:
            out.append("quick")
        if self.ifname:
            out.append(("on ! %s" if self.ifnot else "on %s") % self.ifname)
        if self.af:
            out.append("inet" if self.af == 4 else "inet6")
        if self.proto is not None:
            out.append("proto %s" % PROTONAMES.get(self.proto, self.proto))
        out.append(self._fromto())
        if self.flags:
            out.append("flags %s/%s" % self.flags)
        elif (self.action == "pass" and self.proto in (None, 6) and self.action != "anchor"
              and self.keep_state):
            out.append("flags any")
        if self.icmp_type is not None:
            out.append("%s %s" % ("icmp6-type" if self.icmp_proto == 58 else "icmp-type", self.icmp_type))
        if self.action == "pass" and not self.keep_state:
            out.append("no state")
        elif self.keep_state and self.action != "anchor":
            out.append("%s state" % self.state)
        for lab in self.labels:
            out.append('label "%s"' % lab)
        if self.tag:
            out.append("tag %s" % self.tag)
        if self.divert_port:
            out.append("divert-to %u" % self.divert_port)
        return " ".join(x for x in out if x)

    def _fromto(self):
        if self.src is None and self.dst is None and self.sport is None and self.dport is None:
            return "all"
        return "from %s to %s" % (_addr_text(self.src, self.sport, self.proto),
                                  _addr_text(self.dst, self.dport, self.proto))

    # --- matching --------------------------------------------------------------------
    def matches(self, pkt):
        if self.direction and self.direction != pkt["dir"]:
            return False
        if self.ifname:
            if (pkt["iface"] == self.ifname) == self.ifnot:
                return False
        if self.af and self.af != pkt["af"]:
            return False
        if self.proto is not None and self.proto != pkt["proto"]:
            return False
        if not _addr_match(self.src, pkt["src"]) or not _addr_match(self.dst, pkt["dst"]):
            return False
        if self.sport and not _port_match(self.sport, pkt.get("sport")):
            return False
        if self.dport and not _port_match(self.dport, pkt.get("dport")):
            return False
        if self.flags and pkt["proto"] == 6:
            want, mask = (_flagbits(f) for f in self.flags)
            if (_flagbits(pkt.get("flags", "")) & mask) != want:
                return False
        return True


def _flagbits(s):
    return sum(1 << "FSRPAUEW".index(c) for c in s if c in "FSRPAUEW")


def _addr_text(addr, port, proto):
    if addr is None:
        s = "any"
    else:
        neg, net = addr
        if net.prefixlen == net.max_prefixlen:
            s = str(net.network_address)
        else:
            s = str(net)
        if neg:
            s = "! " + s
    if port:
        s += " port " + _port_text(port, proto)
    return s


def _port_name(n, proto):
    return PORTNAMES.get(n, str(n))


def _port_text(p, proto):
    op, a, b = p
    if op == ":":
        return "%u:%u" % (a, b)
    if op in ("><", "<>"):
        return "%u %s %u" % (a, op, b)
    return "%s %s" % (op, _port_name(a, proto))


def _addr_match(spec, ip):
    if spec is None:
        return True
    neg, net = spec
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    inside = a.version == net.version and a in net
    return inside != neg


def _port_match(spec, port):
    if port is None:
        return False
    op, a, b = spec
    return {"=": port == a, "!=": port != a, "<": port < a, "<=": port <= a, ">": port > a,
            ">=": port >= a, ":": a <= port <= b, "><": a < port < b,
            "<>": port < a or port > b}[op]


# --------------------------------------------------------------------------------------
# lexer
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\\n]|\\.)*")|(!=|<=|>=|<>|><)|([{}(),!=<>])|([^\s{}(),!=<>"#]+))')


class _Tok:
    def __init__(self, kind, val, line):
        self.kind, self.val, self.line = kind, val, line

    def __repr__(self):
        return "%s:%r" % (self.kind, self.val)


def _statements(text, fname):
    """Split text into statements (lists of tokens), honouring comments, backslash
    continuation, newlines inside { } and macros (name = "value", $name)."""
    macros = {}
    stmts, cur, depth = [], [], 0
    errors = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        # strip comments (outside quotes)
        out, q = [], False
        for ch in line:
            if ch == '"':
                q = not q
            if ch == "#" and not q:
                break
            out.append(ch)
        line = "".join(out)
        m = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*$', line)
        if m and depth == 0 and not cur:
            macros[m.group(1)] = m.group(2)
            continue

        def sub(mm):
            name = mm.group(1)
            if name not in macros:
                errors.append("%s:%d: macro '%s' not defined" % (fname, lineno, name))
                return ""
            return macros[name]
        line = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", sub, line)
        pos = 0
        while pos < len(line):
            if not line[pos:].strip():
                break
            m = _TOKEN.match(line, pos)
            if not m or m.end() == pos:
                errors.append("%s:%d: syntax error" % (fname, lineno))
                break
            pos = m.end()
            if m.group(1) is not None:
                cur.append(_Tok("str", m.group(1)[1:-1], lineno))
            elif m.group(2) or m.group(3):
                v = m.group(2) or m.group(3)
                depth += v == "{"
                depth -= v == "}"
                cur.append(_Tok("sym", v, lineno))
            else:
                cur.append(_Tok("word", m.group(4), lineno))
        if depth <= 0 and cur:
            stmts.append(cur)
            cur, depth = [], 0
    if cur:
        stmts.append(cur)
    return stmts, errors


class _Parser:
    def __init__(self, toks, fname):
        self.t, self.i, self.fname = toks, 0, fname
        self.line = toks[0].line if toks else 0

    def err(self, msg="syntax error"):
        raise PfError(["%s:%d: %s" % (self.fname, self.line, msg)])

    def peek(self, k=0):
        j = self.i + k
        return self.t[j].val if j < len(self.t) else None

    def take(self):
        if self.i >= len(self.t):
            self.err()
        tok = self.t[self.i]
        self.i += 1
        return tok.val

    def accept(self, *vals):
        if self.peek() in vals:
            return self.take()
        return None

    def expect(self, val):
        if self.peek() != val:
            self.err()
        self.take()

    def at_end(self):
        return self.i >= len(self.t)

    def list_or_one(self, item):
        if self.accept("{"):
            out = []
            while True:
                if self.accept("}"):
                    break
                if self.accept(","):
                    continue
                out.extend(item())
            if not out:
                self.err()
            return out
        return item()


def _num(p, s, lo=0, hi=65535, what="port"):
    if not re.fullmatch(r"\d+", s):
        return None
    v = int(s)
    if v < lo or v > hi:
        p.err("illegal %s value %s" % (what, s))
    return v


def _port_value(p, s):
    v = _num(p, s)
    if v is None:
        if s in SERVICES:
            return SERVICES[s]
        p.err("unknown port %s" % s)
    return v


def _parse_portspec(p):
    def item():
        op = p.accept("=", "!=", "<", "<=", ">", ">=")
        tok = p.take()
        if op:
            return [(op, _port_value(p, tok), 0)]
        if ":" in tok:
            a, _, b = tok.partition(":")
            return [(":", _port_value(p, a), _port_value(p, b))]
        if p.peek() in ("<>", "><"):
            bop = p.take()
            return [(bop, _port_value(p, tok), _port_value(p, p.take()))]
        return [("=", _port_value(p, tok), 0)]
    return p.list_or_one(item)


def _parse_host(p):
    def item():
        neg = bool(p.accept("!"))
        tok = p.take()
        if tok == "any" and not neg:
            return [None]
        if tok in ("self", "no-route", "urpf-failed") or tok.startswith("<"):
            p.err("syntax error")   # tables, self and dynamic addresses are not modelled
        try:
            net = ipaddress.ip_network(tok, strict=False)
        except ValueError:
            # "no IP address found for X" is what pfctl prints for an unknown host
            raise PfError(["no IP address found for %s" % tok,
                           "%s:%d: could not parse host specification" % (p.fname, p.line)])
        return [(neg, net)]
    return p.list_or_one(item)


def _parse_ipportspec(p, proto_needed):
    hosts, ports = [None], [None]
    if p.peek() not in ("port",):
        hosts = _parse_host(p)
    if p.accept("port"):
        ports = _parse_portspec(p)
    return hosts, ports


def parse_rules(text, fname="stdin", anchor_ok=True):
    """Parse a ruleset; returns the expanded list of Rule objects (the way pfctl expands
    { } lists into several rules).  Raises PfError with pfctl's messages."""
    stmts, errors = _statements(text, fname)
    rules = Ruleset()
    for toks in stmts:
        try:
            got = _parse_statement(toks, fname)
        except PfError as e:
            errors.extend(e.messages)
            continue
        if isinstance(got, set):
            rules.skip = got if rules.skip is None else rules.skip | got
        else:
            rules.extend(got)
    if errors:
        raise PfError(errors)
    for n, r in enumerate(rules):
        r.nr = n
    return rules


def _ifname(p, name):
    if len(name) >= IFNAMSIZ:
        p.err("interface name too long")      # if_item: strlcpy into ifname[IFNAMSIZ]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", name):
        p.err()
    return name


def _parse_set(p):
    """`set OPTION ...`: only `set skip on IF | { IF ... } | none` changes what the twin does;
    other options are accepted and ignored (see README)."""
    p.take()
    if p.peek() != "skip":
        return []
    p.take()
    p.expect("on")

    def item():
        neg = bool(p.accept("!"))
        name = _ifname(p, p.take())
        if neg:
            p.err("skip on ! <interface> is not supported")
        return [name]
    names = p.list_or_one(item)
    if not p.at_end():
        p.err()
    return set() if names == ["none"] else set(names)


def _consistency(x, fname, line):
    """parse.y expand_rule + filter_consistent for one expanded rule: its problems."""
    problems = []
    if x.icmp_proto and x.proto != x.icmp_proto:
        problems.append("icmp-type mismatch")
    if x.proto not in (6, 17) and (x.sport or x.dport):
        problems.append("port only applies to tcp/udp")
    if x.proto not in (1, 58) and x.icmp_type is not None:
        problems.append("icmp-type/code only applies to icmp")
    if not x.af and x.icmp_type is not None:
        problems.append("must indicate address family with icmp-type/code")
    if x.action != "pass" and x.state in ("keep", "modulate", "synproxy"):
        problems.append("keep state is great, but only for pass rules")
    return ["%s:%d: %s" % (fname, line, m) for m in problems]


def _parse_statement(toks, fname):
    p = _Parser(toks, fname)
    first = p.peek()
    if first == "set":
        return _parse_set(p)
    if first in IGNORED_STATEMENTS:
        return []   # accepted, not modelled (see README)
    r = Rule()
    r.lineno = p.line
    if first == "anchor":
        p.take()
        r.action = "anchor"
        name = p.take()
        if not name or "/" in name.strip("/") and False:
            p.err()
        r.anchor = name
        if p.peek() == "{":
            p.err("syntax error")   # inline anchors are not modelled
    elif first in ("pass", "block", "match"):
        r.action = p.take()
        if r.action == "match":
            p.err("syntax error")
        if r.action == "block":
            r.block_how = p.accept("drop", "return", "return-rst", "return-icmp")
    else:
        p.err()
    r.direction = p.accept("in", "out")
    while p.peek() in ("log", "quick"):
        if p.take() == "log":
            r.log = True
        else:
            r.quick = True
    ifaces = [(False, None)]
    if p.accept("on"):
        def ifitem():
            neg = bool(p.accept("!"))
            return [(neg, _ifname(p, p.take()))]
        ifaces = p.list_or_one(ifitem)
    af = None
    tok = p.accept("inet", "inet6")
    if tok:
        af = 4 if tok == "inet" else 6
    protos = [None]
    if p.accept("proto"):
        def pitem():
            t = p.take()
            if re.fullmatch(r"\d+", t):
                v = int(t)
                if v > 255:
                    p.err("protocol number %s out of range" % t)
                return [v]
            if t not in PROTOS:
                p.err("unknown protocol %s" % t)
            return [PROTOS[t]]
        protos = p.list_or_one(pitem)
    srcs, sports, dsts, dports = [None], [None], [None], [None]
    if p.accept("all"):
        pass
    else:
        if p.accept("from"):
            srcs, sports = _parse_ipportspec(p, True)
        if p.accept("to"):
            dsts, dports = _parse_ipportspec(p, True)
    # filter_opts, any order
    while not p.at_end():
        t = p.take()
        if t == "flags":
            f = p.take()
            if f == "any":
                r.flags = ("", "")
                r._flags_any = True
            else:
                a, _, b = f.partition("/")
                if any(c not in "FSRPAUEW" for c in a + b):
                    p.err("bad flags %s" % f)
                r.flags = (a, b)
        elif t in ("keep", "modulate", "synproxy"):
            p.expect("state")
            r.state = t
            if p.accept("("):
                while p.take() != ")":
                    pass
        elif t == "no":
            p.expect("state")
            r.state = "none"
        elif t == "label":
            tok = p.take()
            if len(tok) >= PF_RULE_LABEL_SIZE:
                p.err("rule label too long (max %d chars)" % (PF_RULE_LABEL_SIZE - 1))
            r.labels.append(tok)
        elif t == "tag":
            r.tag = p.take()
        elif t == "divert-to":
            first_tok = p.take()
            if p.accept("port"):
                port_tok = p.take()    # FreeBSD ignores the host
            else:
                port_tok = first_tok
            v = _port_value(p, port_tok)
            if v == 0:
                p.err("invalid divert port: %u" % v)
            r.divert_port = v
        elif t == "divert-reply":
            p.err("divert-reply has no meaning in FreeBSD pf(4)")
        elif t == "divert-packet":
            p.err("syntax error")
        elif t in ("icmp-type", "icmp6-type"):
            if r.icmp_type is not None:
                p.err("icmp-type cannot be redefined")
            name = p.take()
            known = ICMP_TYPES if t == "icmp-type" else ICMP6_TYPES
            if name not in known and not (name.isdigit() and int(name) <= 255):
                p.err("unknown %s %s" % (t, name))
            r.icmp_type = name
            r.icmp_proto = 1 if t == "icmp-type" else 58
        elif t == "allow-opts":
            pass
        elif t == "ridentifier":
            p.take()
        else:
            p.err()
    if r.action == "block" and r.divert_port:
        pass   # pf accepts it; a block rule never diverts (action == PF_PASS required)
    # parse.y pfrule: flags on a rule with protocols but no tcp among them
    if r.flags and getattr(r, "_flags_any", False) is False and None not in protos and 6 not in protos:
        p.err("flags only apply to tcp")
    out = []
    problems = []
    for neg_if, ifn in ifaces:
        for pr in protos:
            for s in srcs:
                for sp in sports:
                    for d in dsts:
                        for dp in dports:
                            x = _clone(r)
                            x.ifnot, x.ifname = neg_if, ifn
                            x.proto, x.src, x.dst, x.sport, x.dport = pr, s, d, sp, dp
                            fam = af
                            ok = True
                            for a in (s, d):
                                if a is not None:
                                    v = a[1].version
                                    if fam is None:
                                        fam = v
                                    elif fam != v:
                                        ok = False
                            if pr == 1 and fam == 6 or pr == 58 and fam == 4:
                                ok = False
                            if not ok:
                                continue
                            x.af = fam
                            if getattr(x, "_flags_any", False):
                                x.flags = None
                            if x.proto not in (None, 6):
                                x.flags = None     # expand_rule: flags only on tcp
                            x.finish()
                            bad = _consistency(x, p.fname, p.line)
                            if bad:
                                problems += bad + ["%s:%d: skipping rule due to errors" % (p.fname, p.line)]
                            else:
                                out.append(x)
    if not out:
        problems.append("%s:%d: rule expands to no valid combination" % (p.fname, p.line))
    if problems:
        raise PfError(problems)
    return out


def _clone(r):
    x = Rule()
    x.__dict__.update({k: (list(v) if isinstance(v, list) else v) for k, v in r.__dict__.items()})
    return x


def divert_ports(rules):
    return sorted({r.divert_port for r in rules if r.divert_port and r.action == "pass"})
