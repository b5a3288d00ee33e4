"""ipfw rule parser/printer/evaluator of the twin, written from ipfw(8)'s grammar
(sbin/ipfw/ipfw.8: RULE FORMAT, RULE ACTIONS, RULE BODY, SETS OF RULES).
Subset: add [NUM] [set N] ACTION PROTO from SRC [PORTS] to DST [PORTS] [in|out]
[via|recv|xmit IF] [ip4|ip6|keep-state]; actions allow/accept/pass/permit, deny/drop,
divert PORT, tee PORT, count, skipto N."""
import ipaddress
import re

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE = 64, 65, 69
PROTOS = {"ip": None, "all": None, "ip4": None, "ipv4": None, "ip6": None, "ipv6": None,
          "tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmp6": 58}
PROTONAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}


class IpfwError(Exception):
    def __init__(self, msg, code=EX_DATAERR):
        super().__init__(msg)
        self.code = code


class Rule:
    def __init__(self):
        self.num = 0
        self.set = 0
        self.action = "allow"
        self.arg = None
        self.proto = None
        self.family = None      # 4 | 6 | None
        self.src = None          # list of (neg, net) or None (any)
        self.src_neg = False
        self.dst = None
        self.dst_neg = False
        self.sports = None       # list of (lo, hi)
        self.dports = None
        self.direction = None
        self.via = None          # (kind, ifname)
        self.keep_state = False
        self.packets = 0
        self.bytes = 0

    def text(self, show_set=False):
        act = {"divert": "divert %d", "tee": "tee %d", "skipto": "skipto %d"}
        a = act[self.action] % self.arg if self.action in act else self.action
        proto = PROTONAMES.get(self.proto) if self.proto is not None else \
            {4: "ip4", 6: "ip6"}.get(self.family, "ip")
        s = "%05d " % self.num
        if show_set:
            s += "set %d " % self.set
        s += "%s %s from %s to %s" % (a, proto, _addrs(self.src, self.src_neg, self.sports),
                                      _addrs(self.dst, self.dst_neg, self.dports))
        if self.proto is not None and self.family:
            s += " " + {4: "ip4", 6: "ip6"}[self.family]
        if self.direction:
            s += " " + self.direction
        if self.via:
            s += " %s %s" % self.via
        if self.keep_state:
            s += " keep-state :default"
        return s

    def matches(self, pkt, iface_dir_ok=True):
        if self.direction and self.direction != pkt["dir"]:
            return False
        if self.via:
            kind, ifn = self.via
            if kind == "recv" and (pkt["dir"] != "in" or pkt["iface"] != ifn):
                return False
            if kind == "xmit" and (pkt["dir"] != "out" or pkt["iface"] != ifn):
                return False
            if kind == "via" and pkt["iface"] != ifn:
                return False
        if self.family and self.family != pkt["af"]:
            return False
        if self.proto is not None and self.proto != pkt["proto"]:
            return False
        if not _amatch(self.src, self.src_neg, pkt["src"]):
            return False
        if not _amatch(self.dst, self.dst_neg, pkt["dst"]):
            return False
        if self.sports and not any(lo <= (pkt.get("sport") or -1) <= hi for lo, hi in self.sports):
            return False
        if self.dports and not any(lo <= (pkt.get("dport") or -1) <= hi for lo, hi in self.dports):
            return False
        return True


def _addrs(lst, neg, ports):
    s = "any" if lst is None else ",".join(
        str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in lst)
    if lst is not None and len(lst) > 1:
        s = "{ " + s.replace(",", " or ") + " }"
    if neg:
        s = "not " + s
    if ports:
        s += " " + ",".join(str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in ports)
    return s


def _amatch(lst, neg, ip):
    if lst is None:
        return not neg
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    inside = any(a.version == n.version and a in n for n in lst)
    return inside != neg


def _parse_addr(tok):
    if tok in ("any", "all"):
        return None
    if tok == "me" or tok == "me6":
        raise IpfwError("hostname ``%s'' unknown" % tok)   # not modelled
    out = []
    for part in tok.strip("{}").replace(" or ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise IpfwError("hostname ``%s'' unknown" % part)
    return out


def _parse_ports(tok):
    if not re.fullmatch(r"[0-9,\-]+", tok):
        return None
    out = []
    for part in tok.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if lo > 65535 or hi > 65535 or lo > hi:
            raise IpfwError("invalid port range %s" % part)
        out.append((lo, hi))
    return out


def split_args(line):
    """ipfw file mode: strip comment, split on blanks, join comma lists."""
    line = line.split("#", 1)[0]
    line = re.sub(r",\s+", ",", line)
    return line.split()


def parse_add(av):
    """av: arguments after 'add'.  Returns Rule."""
    r = Rule()
    i = 0

    def need():
        if i >= len(av):
            raise IpfwError("missing argument", EX_USAGE)
        return av[i]
    if i < len(av) and av[i].isdigit():
        n = int(av[i])
        if n < 1 or n > 65535:
            raise IpfwError("getsockopt(IP_FW_XADD): Invalid argument", EX_UNAVAILABLE)
        if n == 65535:
            raise IpfwError("getsockopt(IP_FW_XADD): Invalid argument", EX_UNAVAILABLE)
        r.num = n
        i += 1
    if i < len(av) and av[i] == "set":
        i += 1
        s = need()
        if not s.isdigit() or int(s) > 31:
            raise IpfwError("illegal set %s" % s)
        r.set = int(s)
        i += 1
    if i < len(av) and av[i] == "prob":
        i += 2
    act = need().lower()
    i += 1
    if act in ("allow", "accept", "pass", "permit"):
        r.action = "allow"
    elif act in ("deny", "drop"):
        r.action = "deny"
    elif act in ("reject", "unreach", "reset"):
        r.action = "deny"
    elif act == "count":
        r.action = "count"
    elif act in ("divert", "tee", "skipto"):
        r.action = act
        tok = need()
        i += 1
        if not tok.isdigit():
            raise IpfwError("illegal %s port" % ("divert/tee" if act != "skipto" else "skipto"))
        r.arg = int(tok)
        if act != "skipto" and (r.arg == 0 or r.arg > 65535):
            raise IpfwError("illegal divert/tee port")
    else:
        raise IpfwError("invalid action %s" % act)
    # log, logamount are accepted and ignored
    while i < len(av) and av[i] in ("log",):
        i += 1
    tok = need().lower()
    i += 1
    if tok not in PROTOS:
        raise IpfwError("invalid protocol ``%s''" % tok)
    r.proto = PROTOS[tok]
    if tok in ("ip4", "ipv4"):
        r.family = 4
    elif tok in ("ip6", "ipv6"):
        r.family = 6
    if need() != "from":
        raise IpfwError("missing ``from''")
    i += 1
    if av[i] == "not":
        r.src_neg = True
        i += 1
    r.src = _parse_addr(need())
    i += 1
    if i < len(av) and av[i] != "to":
        p = _parse_ports(av[i])
        if p is not None:
            r.sports = p
            i += 1
    if i >= len(av) or av[i] != "to":
        raise IpfwError("missing ``to''")
    i += 1
    if need() == "not":
        r.dst_neg = True
        i += 1
    r.dst = _parse_addr(need())
    i += 1
    if i < len(av):
        p = _parse_ports(av[i])
        if p is not None:
            r.dports = p
            i += 1
    if (r.sports or r.dports) and r.proto not in (6, 17):
        raise IpfwError("only TCP, UDP and SCTP protocols are valid with port specifications")
    while i < len(av):
        t = av[i].lower()
        i += 1
        if t in ("in", "out"):
            r.direction = t
        elif t in ("via", "recv", "xmit"):
            r.via = (t, need())
            i += 1
        elif t in ("ip4", "ipv4"):
            r.family = 4
        elif t in ("ip6", "ipv6"):
            r.family = 6
        elif t in ("keep-state", "record-state"):
            r.keep_state = True
            if i < len(av) and av[i].startswith(":"):
                i += 1
        elif t in ("dst-port", "src-port"):
            p = _parse_ports(need())
            i += 1
            if t == "dst-port":
                r.dports = p
            else:
                r.sports = p
        elif t in ("setup", "established", "frag"):
            pass
        else:
            raise IpfwError("unrecognised option [%d] %s" % (i - 1, t))
    for net in (r.src or []) + (r.dst or []):
        if r.family and net.version != r.family:
            raise IpfwError("address family mismatch")
    return r
