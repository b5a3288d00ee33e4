"""Kernel-side halves of the command stand-ins (pfctl, ipfw, sysctl, sockstat, kld*,
netstat).  Each returns (rc, stdout, stderr) with FreeBSD's texts and exit codes where
known; README.md lists what was inferred."""
import getopt
import json
import os
import pwd
import socket
import struct
import time

from twinlib import pf, ipfw
from twinlib import kernel as K

MODFILES = {"pf": "pf.ko", "ipfw": "ipfw.ko", "ipdivert": "ipdivert.ko", "pflog": "pflog.ko",
            "pfsync": "pfsync.ko", "dummynet": "dummynet.ko", "ipfw_nat": "ipfw_nat.ko",
            "if_bridge": "if_bridge.ko"}


def dispatch(k, cmd, argv, files, stdin):
    fn = {"pfctl": pfctl, "ipfw": ipfw_cmd, "sysctl": sysctl, "sockstat": sockstat,
          "kldload": kldload, "kldunload": kldunload, "kldstat": kldstat,
          "netstat": netstat}.get(cmd)
    if fn is None:
        return 127, "", "%s: not found\n" % cmd
    with k.lock:
        k.reap_dead()
        return fn(k, argv, files or {}, stdin)


# ---------------------------------------------------------------------------- pfctl
def pfctl(k, argv, files, stdin):
    try:
        opts, rest = getopt.getopt(argv, "a:deF:f:gk:mnNOo:qRrs:t:T:vx:z")
    except getopt.GetoptError as e:
        return 1, "", "pfctl: %s\nusage: pfctl [-AdeghMmNnOPqRSrvz] [-a anchor] [-D macro=value] [-F modifier]\n" % e
    o = {}
    verbose = 0
    for a, v in opts:
        if a == "-v":
            verbose += 1
        else:
            o[a] = v
    out, err = [], []
    if "pf" not in k.modules:
        return 1, "", "pfctl: /dev/pf: No such file or directory\n"
    anchor = o.get("-a")
    if anchor is not None:
        anchor = anchor.strip("/")
    if "-F" in o:
        what = o["-F"]
        if what in ("rules", "r", "all", "a"):
            before = k.live_ports()
            if anchor:
                k.pf_anchors[anchor] = []
            else:
                k.pf_main = []
            k._note_change(before, (), "pfctl -F")
            err.append("rules cleared\n")
        if what in ("states", "s", "all", "a"):
            n = len(k.pf_states)
            for st in k.pf_states.values():
                st["rule"].states_cur -= 1
            k.pf_states.clear()
            k._track_rules()
            err.append("%d states cleared\n" % n)
    if "-f" in o:
        fname = o["-f"]
        text = stdin if fname == "-" else files.get(fname)
        if text is None:
            return 1, "", "pfctl: %s: No such file or directory\n" % fname
        try:
            rules = pf.parse_rules(text, "stdin" if fname == "-" else fname)
        except pf.PfError as e:
            return 1, "", "\n".join(e.messages) + "\npfctl: Syntax error in config file: pf rules not loaded\n"
        if anchor and any(r.action == "anchor" and False for r in rules):
            pass
        if verbose or "-n" in o:
            if verbose:
                out.extend(r.text() + "\n" for r in rules)
        if "-n" not in o:
            before = k.live_ports()
            for r in rules:
                r.where = anchor or ""
            if anchor:
                k.pf_anchors[anchor] = list(rules)  # one transaction: all or nothing
            else:
                k.pf_main = list(rules)             # other anchors are not touched
            if rules.skip is not None:
                # `set skip on IF` flags the interfaces; a main ruleset load sets exactly its
                # own list (pfctl_adjust_skip_ifaces), `set skip on none` clears it
                if anchor:
                    k.pf_skip |= rules.skip
                else:
                    k.pf_skip = set(rules.skip)
            elif not anchor:
                k.pf_skip = set()
            k._note_change(before, pf.divert_ports(rules),
                           "pfctl%s -f %s" % (" -a " + anchor if anchor else "", fname))
    if "-e" in o:
        if k.pf_enabled:
            return 1, "".join(out), "".join(err) + "pfctl: pf already enabled\n"
        before = k.live_ports()
        k.pf_enabled = True
        # DIOCSTART: new_unrhdr64(&V_pf_stateid, time_second): at every `pfctl -e` the
        # state-ID counter restarts from the current Unix time
        k.pf_since = int(time.time())
        k.pf_counter = k.pf_since
        k._note_change(before, (), "pfctl -e")
        err.append("pf enabled\n")
    if "-d" in o:
        if not k.pf_enabled:
            return 1, "".join(out), "".join(err) + "pfctl: pf not enabled\n"
        before = k.live_ports()
        k.pf_enabled = False
        k._note_change(before, (), "pfctl -d")
        err.append("pf disabled\n")
    if "-s" in o:
        what = o["-s"]
        if what in ("rules", "r", "Rules"):
            if anchor:
                if anchor not in k.pf_anchors:
                    return 1, "", "pfctl: DIOCGETRULES: Invalid argument\n"
                rules = k.pf_anchors[anchor]
            else:
                rules = k.pf_main
            for r in rules:
                # print_rule(..., opts & PF_OPT_VERBOSE2, ...): "@nr " only with -vv
                out.append(("@%d " % r.nr if verbose > 1 else "") + r.text() + "\n")
                if verbose:
                    out.append("  [ Evaluations: %-8d Packets: %-8d Bytes: %-10d States: %-6d]\n"
                               % (r.evaluations, sum(r.packets), sum(r.bytes), r.states_cur))
        elif what in ("Anchors", "A"):
            for name in sorted(k.pf_anchors):
                out.append("  %s\n" % name)
        elif what in ("labels", "l"):
            rules = (k.pf_anchors.get(anchor, []) if anchor else [r for _a, r in k._pf_reachable()])
            agg = {}
            for r in rules:
                for lab in r.labels:
                    a = agg.setdefault(lab, [0] * 8)
                    vals = [r.evaluations, sum(r.packets), sum(r.bytes), r.packets[0], r.bytes[0],
                            r.packets[1], r.bytes[1], r.states_tot]
                    for i, v in enumerate(vals):
                        a[i] += v
            for lab, a in agg.items():
                out.append("%s %s\n" % (lab, " ".join(str(x) for x in a)))
        elif what in ("states", "s"):
            now = time.time()
            for st in k.pf_states.values():
                out.append(_print_state(st, verbose, now))
        elif what in ("info", "i"):
            since = int(time.time()) - k.pf_since if k.pf_enabled and k.pf_since else 0
            d, h, m, s = since // 86400, since // 3600 % 24, since // 60 % 60, since % 60
            status = "Enabled for %d days %02d:%02d:%02d" % (d, h, m, s) if k.pf_enabled else "Disabled"
            out.append("Status: %-40s Debug: Urgent\n\n" % status)
            out.append("State Table                          Total             Rate\n")
            out.append("  %-25s %14d %14s\n" % ("current entries", len(k.pf_states), ""))
            out.append("  %-25s %14d %14s\n" % ("searches", k.counters["packets"], ""))
            out.append("  %-25s %14d %14s\n" % ("inserts", k.pf_counter - k.pf_since if k.pf_since else 0, ""))
            out.append("Counters\n")
            out.append("  %-25s %14d %14s\n" % ("match", k.counters["packets"], ""))
        elif what in ("memory", "m", "timeouts", "t", "Interfaces", "I", "nat", "n", "queue", "q", "Sources", "S", "Tables", "T"):
            pass
        else:
            return 1, "", "pfctl: Unknown show modifier '%s'\n" % what
    return 0, "".join(out), "".join(err)


# pf's default timeouts (pfctl -st): the state's expiry counts down from its last packet
_TIMEOUTS = {6: 86400, 17: 60, 1: 10, 58: 10}
_PFOTHERS = ("NO_TRAFFIC", "SINGLE", "MULTIPLE")


def _print_state(st, verbose, now):
    """One state as sbin/pfctl/pf_print_state.c print_state() prints it.

    First line: interface ("all": floating states), protocol, then for an inbound state the
    destination `<-` the source, for an outbound one the source `->` the destination (the wire
    key holds the source at index 0 inbound, 1 outbound; print_state prints addr[1] first),
    ports as `:P` (inet) or `[P]` (inet6), and the peers' state levels. With -v: TCP's sequence
    window line, then `age`, `expires in`, `P:P pkts, B:B bytes`, `anchor N` (the main ruleset's
    anchor rule the state was created through, omitted when there is none) and `rule M` (the
    creating rule's number in its own ruleset), both as the kernel exports them from the state's
    rule pointers (pf_state_export: `st->anchor.ptr->nr`, `st->rule.ptr->nr`): rules a reload
    replaced stay alive with the numbers they had. With -vv: `id: %016jx creatorid: %08x`."""
    af, p, src, sp, dst, dp = st["key"]
    pn = pf.PROTONAMES.get(p, str(p))

    def host(a, port):
        if port is None:
            return a
        return "%s:%d" % (a, port) if af == 4 else "%s[%d]" % (a, port)
    if st["dir"] == "in":
        pair = "%s <- %s" % (host(dst, dp), host(src, sp))
    else:
        pair = "%s -> %s" % (host(src, sp), host(dst, dp))
    # the generator's packets go one way: the initiating peer has sent, the other not
    if p == 6:
        levels = "ESTABLISHED:ESTABLISHED"
    elif p in (1, 58):
        levels = "0:0"
    else:
        sender, other = _PFOTHERS[1], _PFOTHERS[0]
        levels = "%s:%s" % ((other, sender) if st["dir"] == "in" else (sender, other))
    lines = ["all %s %s       %s\n" % (pn, pair, levels)]
    if verbose:
        if p == 6:
            seq = (st["counter"] * 2654435761) & 0xffffffff
            lines.append("   [%d + 65535]  [%d + 65535]\n" % (seq, (seq ^ 0x5a5a5a5a) & 0xffffffff))
        age = max(0, int(now - st["created"]))
        expire = max(0, int(_TIMEOUTS.get(p, 60) - (now - st.get("last", st["created"]))))
        text = "   age %02d:%02d:%02d, expires in %02d:%02d:%02d, %d:0 pkts, %d:0 bytes" % (
            age // 3600, age // 60 % 60, age % 60, expire // 3600, expire // 60 % 60, expire % 60,
            st["packets"], st.get("bytes", 0))
        if st.get("anchor") is not None:
            text += ", anchor %d" % st["anchor"].nr
        text += ", rule %d" % st["rule"].nr
        lines.append(text + "\n")
    if verbose > 1:
        # print_state: be64toh(s->id), i.e. the counter
        lines.append("   id: %016x creatorid: %08x\n" % (st["counter"], 0x74776e31))
    return "".join(lines)


# ---------------------------------------------------------------------------- ipfw
def ipfw_cmd(k, argv, files, stdin):
    opts = {"q": False, "n": False, "f": False, "S": False, "a": False}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and len(argv[i]) > 1:
        for c in argv[i][1:]:
            opts[c] = True
        i += 1
    av = argv[i:]
    if "ipfw" not in k.modules and not opts.get("n"):
        # -n only checks syntax and never talks to the kernel: it works without ipfw.ko
        return 71, "", "ipfw: retrieving config failed: Protocol not available\n"
    if len(av) == 1 and av[0].startswith("/"):
        text = files.get(av[0])
        if text is None:
            return 64, "", "ipfw: %s: No such file or directory\n" % av[0]
        out = []
        lines = text.split("\n")
        for lineno, line in enumerate(lines, 1):
            args = ipfw.split_args(line)
            if not args:
                continue
            rc, o, e = _ipfw_one(k, args, opts)
            out.append(o)
            if rc:
                # ipfw_readfile runs each line through ipfw_main; errx() ends the whole run
                # at the first error, earlier lines stay applied (no transaction)
                if not opts.get("n"):
                    _want_rest(k, lines[lineno - 1:])
                return rc, "".join(out), "Line %d: %s" % (lineno, e[len("ipfw: "):] if e.startswith("ipfw: ") else e)
        if not opts.get("n"):
            k.wanted_keys = set()       # the file the host was meant to run is loaded whole
        return 0, "".join(out), ""
    if not av:
        return 64, "", "usage: ipfw [options]\ndo \"ipfw -h\" or \"man ipfw\" for details\n"
    return _ipfw_one(k, av, opts)


def _want_rest(k, lines):
    """A file that stopped at its first error: its divert rules that did not get loaded are
    still the rules the host is meant to run (the report judges undiverted flows by them)."""
    for line in lines:
        args = ipfw.split_args(line)
        if args[:1] != ["add"]:
            continue
        try:
            r = ipfw.parse_add(args[1:])
        except (ipfw.IpfwError, IndexError, ValueError):
            continue
        if r.action == "divert" and r.num:
            k.wanted_keys.add(k.ipfw_key(r))


def _ipfw_one(k, av, opts):
    cmd = av[0]
    try:
        if cmd == "add":
            r = ipfw.parse_add(av[1:])
            if opts.get("n"):
                return 0, "", ""                 # syntax only: the kernel is not asked
            if r.action in ("divert", "tee") and "ipdivert" not in k.modules:
                # the kernel refuses O_DIVERT/O_TEE without ip_divert_ptr (EINVAL)
                raise ipfw.IpfwError("getsockopt(IP_FW_XADD): Invalid argument", ipfw.EX_UNAVAILABLE)
            if not r.num:
                nums = [x.num for x in k.ipfw_rules]
                r.num = (max(nums) + 100) // 100 * 100 if nums else 100
                if r.num >= 65535:
                    raise ipfw.IpfwError("getsockopt(IP_FW_XADD): Invalid argument", ipfw.EX_UNAVAILABLE)
            before = k.live_ports()
            k.ipfw_rules.append(r)
            k.ipfw_rules.sort(key=lambda x: x.num)
            k._note_change(before, [r.arg] if r.action in ("divert", "tee") and r.set not in k.ipfw_disabled else [], "ipfw add")
            return 0, "" if opts.get("q") else r.text() + "\n", ""
        if cmd == "delete":
            if opts.get("n"):
                return 0, "", ""
            before = k.live_ports()
            if len(av) >= 3 and av[1] == "set":
                s = int(av[2])
                k.ipfw_rules = [x for x in k.ipfw_rules if x.set != s]
            else:
                for n in av[1:]:
                    if not n.isdigit():
                        raise ipfw.IpfwError("invalid rule number %s" % n, ipfw.EX_USAGE)
                    n = int(n)
                    if not any(x.num == n for x in k.ipfw_rules):
                        if opts.get("q"):
                            continue
                        raise ipfw.IpfwError("rule %d: setsockopt(IP_FW_XDEL): No such process" % n, ipfw.EX_UNAVAILABLE)
                    k.ipfw_rules = [x for x in k.ipfw_rules if x.num != n]
            k._note_change(before, (), "ipfw delete")
            return 0, "", ""
        if cmd == "flush":
            if opts.get("n"):
                return 0, "", ""
            before = k.live_ports()
            k.ipfw_rules = [x for x in k.ipfw_rules if x.set == 31]   # flush spares set 31
            k._note_change(before, (), "ipfw flush")
            return 0, "", "" if opts.get("q") or opts.get("f") else "Flushed all rules.\n"
        if cmd in ("list", "show", "l", "print", "p"):
            if "ipfw" not in k.modules:
                return 71, "", "ipfw: retrieving config failed: Protocol not available\n"
            show = cmd == "show"
            want = {int(x) for x in av[1:] if x.isdigit()}
            rules = [x for x in k.ipfw_rules if not want or x.num in want]
            lines = []
            pw = max([len(str(x.packets)) for x in rules] + [1])
            bw = max([len(str(x.bytes)) for x in rules] + [1])
            for x in rules:
                t = x.text(show_set=opts.get("S"))
                if show:
                    t = t[:5] + " %*d %*d " % (pw, x.packets, bw, x.bytes) + t[6:]
                if x.set in k.ipfw_disabled:
                    t = "# DISABLED " + t
                lines.append(t)
            if not want or 65535 in want:
                d = "65535 " + ("set 31 " if opts.get("S") else "") + "deny ip from any to any"
                if show:
                    d = d[:5] + " %*d %*d " % (pw, 0, bw, 0) + d[6:]
                lines.append(d)
            return 0, "".join(l + "\n" for l in lines), ""
        if cmd == "set":
            return _ipfw_set(k, av[1:], opts)
        if cmd == "zero":
            for x in k.ipfw_rules:
                x.packets = x.bytes = 0
            return 0, "", "" if opts.get("q") else "Accounting cleared.\n"
        if cmd in ("enable", "disable"):
            return 0, "", ""
        raise ipfw.IpfwError("bad command `%s'" % cmd, ipfw.EX_USAGE)
    except ipfw.IpfwError as e:
        return e.code, "", "ipfw: %s\n" % e
    except (IndexError, ValueError):
        return ipfw.EX_USAGE, "", "ipfw: missing argument\n"


def _setnum(s):
    if not s.isdigit() or int(s) > 31:
        raise ipfw.IpfwError("invalid set number %s" % s)
    return int(s)


def _ipfw_set(k, av, opts):
    if not av or av[0] == "show":
        dis = sorted(k.ipfw_disabled)
        en = [i for i in range(32) if i not in k.ipfw_disabled]
        s = ("disable " + " ".join(map(str, dis)) + " " if dis else "") + "enable " + " ".join(map(str, en))
        return 0, s + "\n", ""
    before = k.live_ports()
    op = av[0]
    if op == "swap":
        a, b = _setnum(av[1]), _setnum(av[2])
        if not opts.get("n"):
            for x in k.ipfw_rules:            # one kernel operation: atomic
                if x.set == a:
                    x.set = b
                elif x.set == b:
                    x.set = a
    elif op == "move":
        if av[1] == "rule":
            n, s = int(av[2]), _setnum(av[4])
            if not opts.get("n"):
                for x in k.ipfw_rules:
                    if x.num == n:
                        x.set = s
        else:
            a, s = _setnum(av[1]), _setnum(av[3])
            if av[2] != "to":
                raise ipfw.IpfwError("syntax: set move [rule] X to Y", ipfw.EX_USAGE)
            if not opts.get("n"):
                for x in k.ipfw_rules:
                    if x.set == a:
                        x.set = s
    elif op in ("enable", "disable"):
        cur = op
        en, dis = set(), set()
        for t in av:
            if t in ("enable", "disable"):
                cur = t
                continue
            n = _setnum(t)
            if n == 31:
                raise ipfw.IpfwError("set 31 cannot be disabled" if cur == "disable" else "invalid set number 31")
            (en if cur == "enable" else dis).add(n)
        if not opts.get("n"):
            k.ipfw_disabled = (k.ipfw_disabled | dis) - en
    else:
        raise ipfw.IpfwError("invalid set command %s" % op, ipfw.EX_USAGE)
    touched = [x.arg for x in k.ipfw_rules if x.action in ("divert", "tee")]
    k._note_change(before, [], "ipfw set " + op)
    return 0, "", ""


# ---------------------------------------------------------------------------- sysctl
def _sysctls(k):
    v = {"kern.ostype": "FreeBSD", "kern.osrelease": "15.0-RELEASE", "kern.osreldate": "1500068",
         "kern.hostname": k.name, "hw.ncpu": "2", "hw.machine": "amd64", "hw.machine_arch": "amd64",
         "hw.pagesize": "4096", "hw.physmem": str(8 * 2 ** 30), "hw.model": "twin virtual CPU",
         "kern.boottime": "{ sec = %d, usec = 0 } %s" % (k.boot_time, time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(k.boot_time))),
         "kern.features.inet6": "1", "kern.version": "FreeBSD 15.0-RELEASE twin"}
    if "ipdivert" in k.modules:
        v["net.inet.divert.sendspace"] = str(K.RECVSPACE)
        v["net.inet.divert.recvspace"] = str(K.RECVSPACE)
    if "ipfw" in k.modules:
        v["net.inet.ip.fw.enable"] = "1"
        v["net.inet.ip.fw.default_to_accept"] = "0"
        v["net.inet.ip.fw.verbose"] = "0"
    if "pf" in k.modules:
        v["net.pf.request_maxcount"] = "65535"
    return v


# struct sizes on amd64/arm64 (sys/sys/socketvar.h struct xsocket, sys/netinet/in_pcb.h struct
# xinpcb and struct xinpgen, both __aligned(8); little-endian host order)
XINPGEN_LEN = 64
XSOCKET_LEN = 240
XINPCB_LEN = 400
IPPROTO_DIVERT = 258
INP_IPV4 = 0x1


def _xinpgen(count, gen, sogen):
    # ksize_t xig_len; u_int xig_count; uint32_t spare; inp_gen_t xig_gen; so_gen_t xig_sogen;
    # uint64_t spare[4]
    return struct.pack("<QIIQQ32x", XINPGEN_LEN, count, 0, gen, sogen)


def _xsockbuf(cc, hiwat):
    # sb_cc sb_hiwat sb_mbcnt spare0 spare1 sb_mbmax sb_lowat sb_timeo (u32/i32), sb_flags (i16)
    return struct.pack("<IIIIIIiih2x", cc, hiwat, cc, 0, 0, hiwat * 8, 1, 0, 0)


def _xsocket(s, k):
    body = struct.pack("<QQQQQ56x", XSOCKET_LEN, s.kaddr, s.kaddr + 0x200, 0, 0)
    body += struct.pack("<iiIIIiI32x", IPPROTO_DIVERT, socket.AF_INET, 0, 0, 0, 0, 0)
    # so_options is an int16_t in struct xsocket: SO_REUSEPORT_LB (0x10000) does not fit and
    # reads 0 (sotoxsocket assigns the int)
    body += struct.pack("<hhhhhH", socket.SOCK_RAW, 0, 0, 0, 0, 0)
    body += _xsockbuf(s.rcv_cc, K.RECVSPACE) + _xsockbuf(0, K.RECVSPACE)
    assert len(body) == XSOCKET_LEN
    return body


def _xinpcb(s, k):
    rec = struct.pack("<Q", XINPCB_LEN) + _xsocket(s, k)
    # struct in_conninfo: inc_flags u8, inc_len u8, inc_fibnum u16, then in_endpoints:
    # ie_fport, ie_lport (network order), ie_dependfaddr[16], ie_dependladdr[16], ie6_zoneid
    rec += struct.pack("<BBH", 0, 0, 0) + struct.pack("!HH", 0, s.port) + b"\0" * 32 + struct.pack("<I", 0)
    rec += b"\0" * (-len(rec) % 8)                      # inp_gencnt is 8-aligned
    rec += struct.pack("<QQ32x", s.id, 0)               # inp_gencnt, inp_ppcb, inp_spare64[4]
    rec += struct.pack("<IIIiiIi16x", 0, 0, 0, 0, 0, 0, 0)
    rec += struct.pack("<HBbBBBB4x", 0, 0, 0, INP_IPV4, 0, 0, 0)   # ... inp_vflag = INP_IPV4
    rec += b"\0" * (XINPCB_LEN - len(rec))
    assert len(rec) == XINPCB_LEN
    return rec


def pcblist_bytes(k):
    """net.inet.divert.pcblist (ip_divert.c div_pcblist): an xinpgen, one xinpcb per bound
    divert socket (a socket held by several processes is one socket: one record), and a
    closing xinpgen."""
    bound = sorted((s for s in k.socks.values() if s.port is not None and not s.fake),
                   key=lambda x: (x.port, x.id))
    gen = max([s.id for s in k.socks.values()] + [0])      # generation: the newest socket
    # xig_count is the number of divert sockets, bound or not (dcb_count) (I)
    head = _xinpgen(len(k.socks), gen, gen)
    return head + b"".join(_xinpcb(s, k) for s in bound) + head


def sysctl(k, argv, files, stdin):
    nflag = xflag = oflag = False
    names = []
    for a in argv:
        if a.startswith("-") and len(a) > 1:
            nflag = nflag or "n" in a
            xflag = xflag or "x" in a
            oflag = oflag or "o" in a
        else:
            names.append(a)
    table = _sysctls(k)
    out, err, rc = [], [], 0
    for n in names:
        if "=" in n:
            name, _, val = n.partition("=")
            if name not in table:
                err.append("sysctl: unknown oid '%s'\n" % name)
                rc = 1
                continue
            out.append("%s: %s -> %s\n" % (name, table[name], val))
            continue
        if n == "net.inet.divert.pcblist" and "ipdivert" in k.modules:
            # An opaque node (CTLTYPE_OPAQUE, format "S,xinpcb"): sysctl(8) prints it only with
            # -x (the whole buffer in hex) or -o (its first 16 bytes)
            data = pcblist_bytes(k)
            if xflag or oflag:
                dump = data.hex() if xflag else data[:16].hex() + "..."
                body = "Format:S,xinpcb Length:%d Dump:0x%s" % (len(data), dump)
                out.append(body + "\n" if nflag else "%s: %s\n" % (n, body))
            continue
        if n == "net.inet.divert.stats" and "ipdivert" in k.modules:
            d = k.divstat
            body = "diverted=%d noport=%d outbound=%d inbound=%d" % (d["diverted"], d["noport"], d["outbound"], d["inbound"])
            out.append(body + "\n" if nflag else "%s: %s\n" % (n, body))
            continue
        hits = {x: y for x, y in table.items() if x == n or x.startswith(n + ".")}
        if not hits:
            err.append("sysctl: unknown oid '%s'\n" % n)
            rc = 1
            continue
        for x, y in sorted(hits.items()):
            out.append(y + "\n" if nflag else "%s: %s\n" % (x, y))
    return rc, "".join(out), "".join(err)


def netstat(k, argv, files, stdin):
    if "-s" in argv and "divert" in argv:
        if "ipdivert" not in k.modules:
            return 1, "", "netstat: divert: protocol not available\n"
        d = k.divstat
        return 0, ("divert:\n\t%d packet%s diverted\n\t%d packet%s dropped, no socket bound to port (noport)\n"
                   "\t%d packet%s reinjected outbound\n\t%d packet%s reinjected inbound\n") % (
            d["diverted"], "s" if d["diverted"] != 1 else "", d["noport"], "s" if d["noport"] != 1 else "",
            d["outbound"], "s" if d["outbound"] != 1 else "", d["inbound"], "s" if d["inbound"] != 1 else ""), ""
    return 1, "", "netstat: only 'netstat -s -p divert' is modelled by the twin\n"


# ---------------------------------------------------------------------------- sockstat
def _host_pids():
    """Processes of this host: those in the kernel daemon's mount namespace."""
    me = os.getpid()
    mine = os.readlink("/proc/self/ns/mnt")
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            if os.readlink("/proc/%s/ns/mnt" % d) == mine:
                yield int(d)
        except OSError:
            pass


def _holders(k):
    """{socket id: [(pid, fd, user, command)]}: every process descriptor that holds a divert
    socket (a socket inherited by a forked child is held twice)."""
    by_ino = {s.ino: s.id for s in k.socks.values() if s.ino}
    out = {}
    if not by_ino:
        return out
    for pid in _host_pids():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        found = []
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in by_ino:
                found.append((int(fd), by_ino[int(link[8:-1])]))
        if not found:
            continue
        try:
            comm = open("/proc/%d/comm" % pid).read().strip()
            uid = next(int(line.split()[2]) for line in open("/proc/%d/status" % pid) if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        for fd, sid in found:
            out.setdefault(sid, []).append((pid, fd, user, comm))
    return out


def sockstat(k, argv, files, stdin):
    fmt = "text"
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--libxo"):
            if "=" in a:
                fmt = a.split("=", 1)[1]
            else:
                fmt = argv[i + 1]
                i += 1
        else:
            args.append(a)
        i += 1
    fmt = fmt.split(",")[0].lstrip(":")
    try:
        opts, rest = getopt.getopt(args, "46ACcfIij:Llnp:P:qSsUuvw")
    except getopt.GetoptError:
        return 1, "", "usage: sockstat [--libxo] [-46ACcfIiLlnqSsUuvw] [-j jid] [-p ports]\n                [-P protocols]\n"
    o = dict(opts)
    protos = o.get("-P", "sctp,tcp,udp,divert").split(",")
    ports = None
    if "-p" in o:
        ports = set()
        for part in o["-p"].split(","):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                return 1, "", "sockstat: syntax error in port range\n"
            ports.update(range(int(lo), int(hi or lo) + 1))
    only6 = "-6" in o and "-4" not in o
    rows = []       # (socket, pid, fd, user, command); pid None: a socket no process holds
    if "divert" in protos and not only6:
        # divert sockets are listed by default and with -l (they are bound, never connected)
        holders = _holders(k)
        for s in sorted(k.socks.values(), key=lambda x: x.id):
            if s.port is None or s.fake:
                continue
            if ports is not None and s.port not in ports:
                continue
            held = holders.get(s.id)
            if held:
                rows += [(s, pid, fd, user, comm) for pid, fd, user, comm in held]
            else:
                rows.append((s, None, None, None, None))
    rows.sort(key=lambda r: (r[1] is None, r[1] or 0, r[2] or 0))
    if fmt == "json":
        sock = []
        for s, pid, fd, user, comm in rows:
            row = {}
            if pid is not None:
                row.update(user=user, command=comm, pid=pid, fd=fd)
            row.update(proto="div4", local={"address": "*", "port": s.port},
                       foreign={"address": "*", "port": "*"})
            sock.append(row)
        return 0, json.dumps({"__version": "1", "sockstat": {"socket": sock}}) + "\n", ""
    cw = {"user": 4, "command": 10, "pid": max([3] + [len(str(r[1])) for r in rows]),
          "fd": max([2] + [len(str(r[2])) for r in rows]), "proto": 5}
    out = []
    if "-q" not in o:
        out.append("%-*s %-*s %*s %*s %-*s %-*s %-*s\n" % (cw["user"], "USER", cw["command"], "COMMAND", cw["pid"], "PID",
                                                         cw["fd"], "FD", cw["proto"], "PROTO", 21, "LOCAL ADDRESS", 21, "FOREIGN ADDRESS"))
    for s, pid, fd, user, comm in rows:
        out.append("%-*s %-*.10s %*s %*s %-*s %-*s %-*s\n" % (cw["user"], user or "??", cw["command"], comm or "??",
                                                            cw["pid"], "??" if pid is None else pid,
                                                            cw["fd"], "??" if fd is None else fd, cw["proto"], "div4",
                                                            21, "*:%d" % s.port, 21, "*:*"))
    return 0, "".join(out), ""


# ---------------------------------------------------------------------------- kld
def _modname(a):
    n = a.rsplit("/", 1)[-1]
    return n[:-3] if n.endswith(".ko") else n


def kldload(k, argv, files, stdin):
    flags = [a for a in argv if a.startswith("-")]
    names = [a for a in argv if not a.startswith("-")]
    nflag = any("n" in f for f in flags)
    vflag = any("v" in f for f in flags)
    # -q: "Silence any extraneous warnings" (kldload(8)); the exit status stays
    quiet = any("q" in f for f in flags)
    out, err = [], []
    for a in names:
        m = _modname(a)
        if m not in MODFILES:
            return 1, "".join(out), "" if quiet else "kldload: can't load %s: No such file or directory\n" % a
        if m in k.modules:
            if nflag:
                continue
            return 1, "".join(out), "" if quiet else "kldload: can't load %s: module already loaded or in kernel\n" % a
        k.load_module(m)
        if vflag:
            out.append("Loaded %s, id=%d\n" % (a, 2 + sorted(MODFILES).index(m)))
    return 0, "".join(out), ""


def kldunload(k, argv, files, stdin):
    names = [a for a in argv if not a.startswith("-")]
    for a in names:
        m = _modname(a)
        if m not in k.modules:
            return 1, "", "kldunload: can't find file %s\n" % a
        if m == "ipdivert" and k.socks:
            return 1, "", "kldunload: can't unload file: Device busy\n"
        before = k.live_ports()
        k.modules.discard(m)
        if m == "pf":
            k.pf_enabled = False
            k.pf_main, k.pf_anchors, k.pf_states = [], {}, {}
            k.pf_since = 0
            k.pf_skip = set()
        if m == "ipfw":
            k.ipfw_rules = []
        k._note_change(before, (), "kldunload " + m)
    return 0, "", ""


def kldstat(k, argv, files, stdin):
    try:
        opts, rest = getopt.getopt(argv, "dhi:m:n:qv")
    except getopt.GetoptError:
        return 1, "", "usage: kldstat [-dhqv] [-i id] [-n filename]\n       kldstat [-dq] [-m modname]\n"
    o = dict(opts)
    q = "-q" in o
    mods = sorted(k.modules, key=lambda m: k.mod_order.index(m) if m in k.mod_order else 99)
    if "-m" in o:
        m = o["-m"]
        if m not in k.modules:
            return 1, "", "" if q else "kldstat: can't find module %s: No such file or directory\n" % m
        if q:
            return 0, "", ""
        return 0, "Id  Refs Name\n%3d %4d %s\n" % (2 + mods.index(m), 1, m), ""
    if "-n" in o:
        m = _modname(o["-n"])
        if m not in k.modules:
            return 1, "", "" if q else "kldstat: can't find file %s: No such file or directory\n" % o["-n"]
        if q:
            return 0, "", ""
        mods = [m]
    lines = ["Id Refs Address                Size Name\n",
             " 1   %2d 0xffffffff80200000  1f4a1b0 kernel\n" % (20 + len(k.modules))]
    for i, m in enumerate(sorted(k.modules, key=lambda m: k.mod_order.index(m))):
        if m in mods:
            lines.append("%2d %4d 0xffffffff%08x %8x %s\n" % (i + 2, 1, 0x82a00000 + i * 0x40000, 0x3000 + i * 0x1000, MODFILES[m]))
    return 0, "".join(lines), ""
