"""The kernel model of one twin host (one daemon per host).

Holds what the FreeBSD kernel holds for this project: loaded modules, divert sockets and
their SO_REUSEPORT_LB groups, pf (main ruleset, anchors, states), ipfw (rules, sets), and
counters.  Every behaviour here traces to ../../../shared/docs/freebsd-facts.md (see
tests/twin/README.md for the list, with V/I marks).

Started by twinctl inside a fresh mount namespace (unshare -m); it mounts the host's
overlays, then serves requests on an abstract Unix socket (proto.address()).
"""
import ctypes
import errno
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twinlib import proto, pf, ipfw  # noqa: E402

LB_MAX = 32                     # divert(4): at most 32 sockets per port
KNOWN_MODULES = {"pf", "ipfw", "ipdivert", "pflog", "pfsync", "dummynet", "ipfw_nat", "if_bridge"}
IFACES = ["igb0", "igb1", "em0", "vtnet0", "lo0"]
MAGIC = b"TWINPKT!"


def be_state_id(counter):
    """pf: s->id = htobe64(counter); the divert code uses the stored 64-bit value as an
    integer on a little-endian machine (amd64/arm64), i.e. the byte-swapped counter."""
    return int.from_bytes(counter.to_bytes(8, "big"), "little")


def select_member(state_id, count):
    """OPNsense's copy of the change: dcb = group[id % count]."""
    return state_id % count


class DSock:
    _next = 1

    def __init__(self, conn, pid, fd, comm, service):
        self.id = DSock._next
        DSock._next += 1
        self.conn = conn
        self.pid, self.fd, self.comm, self.service = pid, fd, comm, service
        self.lb = False
        self.port = None
        self.slot = None
        self.fake = False
        self.packets = 0
        self.closed = False


class Group:
    def __init__(self, port):
        self.port = port
        self.slots = [None] * LB_MAX
        self.count = 0
        self.plain = None


class Event:
    """A divert rule made live on `port` while the group there had `count` sockets.

    It is incomplete if the group then grows while the rules stay live (sockets were still being
    bound: the mapping of flows changes under them), or if the count declared for the port with
    `twinctl expect` at the time of the load was larger. Once no rule diverts to the port any more
    the event is closed: a group rebuilt after its rules were withdrawn does not make the earlier
    load incomplete.
    """

    def __init__(self, port, count, what, expected=0):
        self.port, self.count, self.max_after, self.what = port, count, count, what
        self.expected = expected
        self.open = True
        self.t = time.time()


class Kernel:
    def __init__(self, hostdir, name, flavour):
        self.hostdir, self.name, self.flavour = hostdir, name, flavour
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.boot_time = int(time.time())
        self.stop_traffic = threading.Event()
        self.traffic_thread = None
        self.expect = {}
        self.faults = {}
        self.reset_state(full=True)

    # ------------------------------------------------------------------ state
    def reset_state(self, full=False):
        with self.lock:
            self.modules = set()
            self.mod_order = []
            self.socks = {}
            self.groups = {}
            self.pf_enabled = False
            self.pf_since = 0
            self.pf_counter = 0
            self.pf_main = []
            self.pf_anchors = {}
            self.pf_states = {}
            self.ipfw_rules = []
            self.ipfw_disabled = set()
            self.flows = {}
            self.inflight = {}
            self.pktseq = 0
            if full:
                self.counters = dict(packets=0, flows=0, dropped_noport=0, dropped_hole=0,
                                     dropped_nodivert=0, dropped_full=0, diverted=0,
                                     reinjected=0, blocked=0, passed=0, flows_remapped=0,
                                     withdraw_violations=0, pf_inet6_not_diverted=0)
                self.events = []
                self.rule_hits = {}
                self.sock_hist = {}
                self.divstat = dict(diverted=0, noport=0, outbound=0, inbound=0)

    def load_module(self, m):
        self.modules.add(m)
        if m in self.mod_order:
            self.mod_order.remove(m)
        self.mod_order.append(m)

    # ------------------------------------------------------------------ groups
    def _group_size(self, port):
        g = self.groups.get(port)
        if not g:
            return 0
        return g.count + (1 if g.plain else 0)

    def _bind(self, s, port, lb):
        if s.port is not None:
            return errno.EINVAL
        if port <= 0 or port > 65535:
            return errno.EINVAL
        g = self.groups.get(port)
        if g is None:
            g = self.groups[port] = Group(port)
        if lb:
            # An LB socket skips the in-use check (I): it may join a port a plain socket holds.
            if g.count >= LB_MAX:
                return errno.ENOSPC
            idx = g.slots.index(None)          # first free slot ("what if we didn't find a slot?")
            g.slots[idx] = s
            g.count += 1
            s.slot = idx
        else:
            if g.plain is not None or g.count > 0:
                return errno.EADDRINUSE
            g.plain = s
        s.port, s.lb = port, lb
        size = self._group_size(port)
        for ev in self.events:
            if ev.port == port and ev.open and size > ev.max_after:
                ev.max_after = size
        return 0

    def _close(self, s):
        if s.closed:
            return
        s.closed = True
        self.socks.pop(s.id, None)
        if s.port is not None and not s.fake:
            g = self.groups.get(s.port)
            if g:
                if g.plain is s:
                    g.plain = None
                elif s.slot is not None and g.slots[s.slot] is s:
                    # no compaction: the slot stays empty, the count drops (I)
                    g.slots[s.slot] = None
                    g.count -= 1
                if s.port in self.live_ports():
                    self.counters["withdraw_violations"] += 1
                if g.count == 0 and g.plain is None:
                    # last member gone: the group is freed
                    del self.groups[s.port]
        self.sock_hist.setdefault(s.id, {"port": s.port, "slot": s.slot, "pid": s.pid,
                                         "packets": s.packets})["packets"] = s.packets
        try:
            s.conn.close()
        except OSError:
            pass
        self.cond.notify_all()

    def reap_dead(self):
        """Sockets whose process is gone: the kernel closes them when the last descriptor
        goes.  A dropped connection is readable with EOF; check without blocking."""
        with self.lock:
            socks = list(self.socks.values())
            if not socks:
                return
            try:
                r, _, _ = select.select([x.conn for x in socks], [], [], 0)
            except (ValueError, OSError):
                r = [x.conn for x in socks if x.conn.fileno() < 0]
            for x in socks:
                if x.conn in r:
                    try:
                        data = x.conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._close(x)

    # ------------------------------------------------------------------ rules liveness
    def _pf_reachable(self):
        out = []
        if "pf" not in self.modules or not self.pf_enabled:
            return out
        seen = set()

        def walk(rules):
            for r in rules:
                if r.action == "anchor":
                    if r.anchor in self.pf_anchors and r.anchor not in seen:
                        seen.add(r.anchor)
                        walk(self.pf_anchors[r.anchor])
                else:
                    out.append(r)
        walk(self.pf_main)
        return out

    def live_ports(self):
        ports = {r.divert_port for r in self._pf_reachable() if r.divert_port and r.action == "pass"}
        if "ipfw" in self.modules:
            ports |= {r.arg for r in self.ipfw_rules
                      if r.action in ("divert", "tee") and r.set not in self.ipfw_disabled}
        return ports

    def _note_change(self, before, touched, what):
        after = self.live_ports()
        for ev in self.events:
            if ev.port not in after:
                ev.open = False
        for port in sorted((after - before) | (set(touched) & after)):
            self.events.append(Event(port, self._group_size(port), what, self.expect.get(port, 0)))

    def incomplete_events(self):
        out = []
        for ev in self.events:
            want = max(ev.max_after, ev.expected)
            if ev.count < want:
                out.append({"port": ev.port, "sockets_at_load": ev.count, "sockets_wanted": want,
                            "what": ev.what, "time": ev.t})
        return out

    # ------------------------------------------------------------------ packet path
    def _new_state_id(self):
        sid = self.pf_counter
        self.pf_counter += 1
        return be_state_id(sid), sid

    def process(self, pkt, flow=None):
        """Run one packet through pf (then ipfw).  Returns a verdict string."""
        with self.lock:
            self.counters["packets"] += 1
            verdict = "pass"
            if "pf" in self.modules and self.pf_enabled:
                verdict = self._pf_test(pkt, flow)
                if verdict != "pass":
                    return verdict
            if "ipfw" in self.modules:
                verdict = self._ipfw_chk(pkt, flow, 0)
            if verdict == "pass":
                self.counters["passed"] += 1
            return verdict

    def _hit(self, key):
        self.rule_hits[key] = self.rule_hits.get(key, 0) + 1

    def _pf_eval(self, rules, pkt, depth=0):
        last = None
        for r in rules:
            if r.action == "anchor":
                if depth < 8 and r.anchor in self.pf_anchors and r.matches(pkt):
                    m, q = self._pf_eval(self.pf_anchors[r.anchor], pkt, depth + 1)
                    if m is not None:
                        last = m
                        if q or r.quick:
                            return last, True
                continue
            r.evaluations += 1
            if r.matches(pkt):
                last = r
                if r.quick:
                    return last, True
        return last, False

    def _pf_test(self, pkt, flow):
        key = (pkt["af"], pkt["proto"], pkt["src"], pkt.get("sport"), pkt["dst"], pkt.get("dport"))
        rkey = (pkt["af"], pkt["proto"], pkt["dst"], pkt.get("dport"), pkt["src"], pkt.get("sport"))
        st = self.pf_states.get(key) or self.pf_states.get(rkey)
        if st is not None:
            rule, sid = st["rule"], st["id"]      # a state keeps its rule (r = s->rule.ptr)
            st["packets"] += 1
        else:
            rule, _ = self._pf_eval(self.pf_main, pkt)
            sid = 0
            if rule is None:
                return "pass"                    # pf's default rule passes
            if rule.action == "block":
                rule.packets[0 if pkt["dir"] == "in" else 1] += 1
                self._hit(rule.text())
                self.counters["blocked"] += 1
                return "block"
            if rule.keep_state and not (pkt["proto"] == 6 and "S" not in pkt.get("flags", "S")):
                sid, raw = self._new_state_id()
                st = {"id": sid, "raw": raw, "rule": rule, "key": key, "packets": 1,
                      "iface": pkt["iface"], "dir": pkt["dir"], "created": time.time()}
                self.pf_states[key] = st
                rule.states_cur += 1
                rule.states_tot += 1
                if flow is not None:
                    flow["state"] = key
        rule.packets[0 if pkt["dir"] == "in" else 1] += 1
        rule.bytes[0 if pkt["dir"] == "in" else 1] += pkt.get("len", 60)
        self._hit(rule.text())
        if rule.divert_port and not pkt.get("looped"):
            if pkt["af"] == 6:
                # "pf: divert(9) is not supported for IPv6": passed without diversion
                self.counters["pf_inet6_not_diverted"] += 1
                return "pass"
            if "ipdivert" not in self.modules:
                # "pf: divert(4) is not loaded": dropped
                self.counters["dropped_nodivert"] += 1
                return "drop-nodivert"
            return self._divert(rule.divert_port, sid, pkt, flow, rule_nr=0)
        return "pass"

    def _ipfw_chk(self, pkt, flow, start_after):
        for r in sorted(self.ipfw_rules, key=lambda x: x.num):
            if r.num <= start_after or r.set in self.ipfw_disabled:
                continue
            if not r.matches(pkt):
                continue
            r.packets += 1
            r.bytes += pkt.get("len", 60)
            self._hit("ipfw " + r.text())
            if r.action == "count":
                continue
            if r.action == "allow":
                return "pass"
            if r.action == "deny":
                self.counters["blocked"] += 1
                return "block"
            if r.action == "skipto":
                return self._ipfw_chk(pkt, flow, r.arg - 1)
            if r.action in ("divert", "tee"):
                if "ipdivert" not in self.modules:
                    self.counters["dropped_nodivert"] += 1
                    return "drop-nodivert"
                if r.action == "tee":
                    self._divert(r.arg, 0, dict(pkt, tee=True), None, r.num)
                    continue
                # ipfw hands no flow identifier: id 0, the first member
                return self._divert(r.arg, 0, pkt, flow, r.num)
        # rule 65535: deny ip from any to any (net.inet.ip.fw.default_to_accept=0)
        self._hit("ipfw 65535 deny ip from any to any")
        self.counters["blocked"] += 1
        return "block"

    def _divert(self, port, sid, pkt, flow, rule_nr):
        self.divstat["diverted"] += 1
        g = self.groups.get(port)
        target = None
        if g is not None and g.count > 0:
            idx = select_member(sid, g.count)
            target = g.slots[idx]
            if target is None:
                self.counters["dropped_hole"] += 1
                return "drop-hole"
        elif g is not None and g.plain is not None:
            target = g.plain
        if target is None:
            self.counters["dropped_noport"] += 1
            self.divstat["noport"] += 1
            return "drop-noport"
        if flow is not None and not pkt.get("tee"):
            prev = flow.get("sock")
            if prev is not None and prev != target.id and not flow.get("remapped"):
                flow["remapped"] = True
                self.counters["flows_remapped"] += 1
            flow["sock"] = target.id
        self.pktseq += 1
        pid = self.pktseq
        data = _build_packet(pkt, pid)
        addr = socket.inet_aton("0.0.0.0") if pkt["dir"] == "out" else socket.inet_aton("192.0.2.1")
        try:
            target.conn.send(b"P" + struct.pack("!H", rule_nr) + addr + data, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            self.counters["dropped_full"] += 1
            return "drop-full"
        target.packets += 1
        self.counters["diverted"] += 1
        self.inflight[pid] = (dict(pkt), rule_nr, flow)
        if len(self.inflight) > 50000:
            for k in list(self.inflight)[:10000]:
                del self.inflight[k]
        return "divert"

    def reinject(self, s, rule_nr, data):
        with self.lock:
            i = data.rfind(MAGIC)
            if i < 0:
                return
            (pid,) = struct.unpack("!Q", data[i + 8:i + 16])
            ent = self.inflight.pop(pid, None)
            self.counters["reinjected"] += 1
            self.divstat["inbound" if ent and ent[0]["dir"] == "in" else "outbound"] += 1
            if ent is None:
                return
            pkt, nr, flow = ent
            if "ipfw" in self.modules and nr:
                # reinjected packets resume at the rule after the one in sin_port
                v = self._ipfw_chk(dict(pkt, looped=True), None, rule_nr)
                if v == "pass":
                    self.counters["passed"] += 1
            else:
                self.counters["passed"] += 1
            self.cond.notify_all()

    # ------------------------------------------------------------------ traffic
    def traffic_start(self, rate):
        self.traffic_stop()
        self.stop_traffic = threading.Event()
        t = threading.Thread(target=self._traffic, args=(rate, self.stop_traffic), daemon=True)
        self.traffic_thread = t
        t.start()

    def traffic_stop(self):
        self.stop_traffic.set()
        t = self.traffic_thread
        if t is not None:
            t.join()
        self.traffic_thread = None

    def _traffic(self, rate, stop):
        rnd = random.Random(hash(self.name) & 0xffff)
        tick = 0.05
        carry = 0.0
        active = []
        while not stop.wait(tick):
            carry += rate * tick
            n, carry = int(carry), carry - int(carry)
            with self.lock:
                for _ in range(n):
                    active.append(self.new_flow(rnd))
                still = []
                for f in active:
                    self.flow_packet(f)
                    if f["left"] > 0:
                        still.append(f)
                    else:
                        self.end_flow(f)
                active = still
        with self.lock:
            for f in active:
                self.end_flow(f)

    def _candidates(self):
        rules = [r for r in self._pf_reachable() if r.action == "pass"]
        if "ipfw" in self.modules:
            rules += [r for r in self.ipfw_rules if r.set not in self.ipfw_disabled]
        return rules

    def new_flow(self, rnd, spec=None):
        if spec is None:
            spec = self._random_spec(rnd)
        self.counters["flows"] += 1
        f = dict(spec)
        if "left" not in f:
            f["left"] = rnd.randint(3, 8)
        f["first"] = True
        self.flows[id(f)] = f
        return f

    def _random_spec(self, rnd):
        cands = self._candidates()
        if cands and rnd.random() < 0.7:
            r = rnd.choice(cands)
            return _spec_matching(r, rnd)
        af = rnd.choice([4, 4, 4, 6])
        proto = rnd.choice([6, 6, 17, 1 if af == 4 else 58])
        return dict(af=af, proto=proto, src=_rand_ip(rnd, af), dst=_rand_ip(rnd, af),
                    sport=rnd.randint(1024, 65535) if proto in (6, 17) else None,
                    dport=rnd.choice([22, 53, 80, 443, 8080, rnd.randint(1, 65535)]) if proto in (6, 17) else None,
                    iface=rnd.choice(IFACES), dir=rnd.choice(["in", "out"]))

    def flow_packet(self, f):
        pkt = {k: f[k] for k in ("af", "proto", "src", "dst", "sport", "dport", "iface", "dir")}
        if f["proto"] == 6:
            pkt["flags"] = "S" if f["first"] else "A"
        f["first"] = False
        f["left"] -= 1
        return self.process(pkt, f)

    def end_flow(self, f):
        self.flows.pop(id(f), None)
        key = f.get("state")
        if key and key in self.pf_states:
            st = self.pf_states.pop(key)
            st["rule"].states_cur -= 1

    # ------------------------------------------------------------------ report
    def report(self):
        with self.lock:
            self.reap_dead()
            socks = {}
            for sid, h in self.sock_hist.items():
                socks[str(sid)] = dict(h)
            for s in self.socks.values():
                if s.port is not None:
                    socks[str(s.id)] = {"port": s.port, "slot": s.slot, "pid": s.pid,
                                        "packets": s.packets}
            inc = self.incomplete_events()
            per_port = {}
            for v in socks.values():
                if v["port"] is not None:
                    per_port[str(v["port"])] = per_port.get(str(v["port"]), 0) + v["packets"]
            return dict(self.counters, incomplete_loads=len(inc), incomplete_load_details=inc,
                        sockets=socks, port_packets=per_port, rule_hits=dict(self.rule_hits),
                        groups={str(p): {"count": g.count, "plain": g.plain is not None,
                                         "slots": [x.id if x else None for x in g.slots[:max(g.count, 1) + 2]]}
                                for p, g in self.groups.items()},
                        inflight=len(self.inflight))


def _rand_ip(rnd, af):
    if af == 4:
        return str(ipaddress.IPv4Address(rnd.choice([0x0a000000, 0xc0a80000, 0xac100000, 0xcb007100, 0x08080800]) + rnd.randint(1, 250)))
    return str(ipaddress.IPv6Address(0x20010db8 << 96 | rnd.randint(1, 2 ** 32)))


def _pick_in(rnd, spec, af):
    if spec is None:
        return _rand_ip(rnd, af)
    neg, net = spec
    if neg:
        for _ in range(20):
            ip = _rand_ip(rnd, net.version)
            if ipaddress.ip_address(ip) not in net:
                return ip
        return _rand_ip(rnd, net.version)
    if net.num_addresses <= 2:
        return str(net.network_address)
    return str(net.network_address + rnd.randint(1, min(net.num_addresses - 2, 2 ** 20)))


def _spec_matching(r, rnd):
    if isinstance(r, pf.Rule):
        af = r.af or (r.src[1].version if r.src else (r.dst[1].version if r.dst else rnd.choice([4, 4, 6])))
        proto = r.proto if r.proto is not None else rnd.choice([6, 17, 1 if af == 4 else 58])

        def port(spec):
            if spec is None:
                return rnd.randint(1024, 65535)
            op, a, b = spec
            if op == ":":
                return rnd.randint(a, b)
            if op == "=":
                return a
            return rnd.randint(1, 65535)
        return dict(af=af, proto=proto, src=_pick_in(rnd, r.src, af), dst=_pick_in(rnd, r.dst, af),
                    sport=port(r.sport) if proto in (6, 17) else None,
                    dport=port(r.dport) if proto in (6, 17) else None,
                    iface=(r.ifname if r.ifname and not r.ifnot else rnd.choice(IFACES)),
                    dir=r.direction or rnd.choice(["in", "out"]))
    af = r.family or (r.src[0].version if r.src else (r.dst[0].version if r.dst else rnd.choice([4, 6])))
    proto = r.proto if r.proto is not None else rnd.choice([6, 17])

    def iport(lst):
        if not lst:
            return rnd.randint(1024, 65535)
        lo, hi = rnd.choice(lst)
        return rnd.randint(lo, hi)
    sp = None if r.src is None else (False, rnd.choice(r.src))
    dp = None if r.dst is None else (False, rnd.choice(r.dst))
    via = r.via[1] if r.via else rnd.choice(IFACES)
    d = r.direction or ("in" if r.via and r.via[0] == "recv" else "out" if r.via and r.via[0] == "xmit" else rnd.choice(["in", "out"]))
    return dict(af=af, proto=proto, src=_pick_in(rnd, sp, af), dst=_pick_in(rnd, dp, af),
                sport=iport(r.sports) if proto in (6, 17) else None,
                dport=iport(r.dports) if proto in (6, 17) else None, iface=via, dir=d)


def _build_packet(pkt, pid):
    payload = MAGIC + struct.pack("!Q", pid)
    proto = pkt["proto"]
    if proto in (6, 17):
        l4 = struct.pack("!HH", pkt.get("sport") or 0, pkt.get("dport") or 0)
        l4 += b"\0" * (20 - 4 if proto == 6 else 4)
    else:
        l4 = struct.pack("!BBH", 8, 0, 0) + b"\0" * 4
    body = l4 + payload
    if pkt["af"] == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), pid & 0xffff, 0, 64, proto, 0,
                          socket.inet_aton(pkt["src"]), socket.inet_aton(pkt["dst"]))
    else:
        hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64,
                          socket.inet_pton(socket.AF_INET6, pkt["src"]),
                          socket.inet_pton(socket.AF_INET6, pkt["dst"]))
    return hdr + body
