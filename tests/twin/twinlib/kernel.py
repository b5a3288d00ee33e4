"""The kernel model of one twin host (one daemon per host).

Holds what the FreeBSD kernel holds for this project: loaded modules, divert sockets and
their SO_REUSEPORT_LB groups, pf (main ruleset, anchors, states), ipfw (rules, sets), and
counters.  Every behaviour here traces to ../../../shared/docs/freebsd-facts.md (version 2;
tests/twin/README.md lists each fact with its V/I mark and the test that shows it).

Member selection is not modelled here: it is the collection's own model of the seed kernel,
plugins/module_utils/_lb.py (`select_slot`, `state_id_bytes`, `stateless_slot`, `compact`),
loaded by file path so that the twin imports nothing of Ansible.

Started by twinctl inside a fresh mount namespace (unshare -m); it mounts the host's
overlays, then serves requests on an abstract Unix socket (proto.address()).
"""
import errno
import heapq
import importlib.util
import ipaddress
import os
import random
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twinlib import pf  # noqa: E402

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LB_PATH = os.path.join(CHECKOUT, "plugins", "module_utils", "_lb.py")


def _load_lb(path=LB_PATH):
    """The collection's model of the seed kernel's load balancing (standard library only)."""
    spec = importlib.util.spec_from_file_location("divert_fleet_lb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LB = _load_lb()
LB_MAX = LB.MAX_GROUP           # DIVCBLBGROUP_SIZE: at most 32 sockets per group
# ip_divert.c: DIVRCVQ (65536 + 100) is the receive buffer of a divert socket; sbappendaddr
# charges the sockaddr_in (16 bytes) and the packet, and refuses what does not fit.
RECVSPACE = 65536 + 100
SOCKADDR_LEN = 16
KNOWN_MODULES = {"pf", "ipfw", "ipdivert", "pflog", "pfsync", "dummynet", "ipfw_nat", "if_bridge"}
IFACES = ["igb0", "igb1", "em0", "vtnet0", "lo0"]
MAGIC = b"TWINPKT!"
INFLIGHT_MAX = 50000
DETAILS_MAX = 50
PACKET_SIZES = (60,) * 7 + (576,) * 4 + (1500,)     # "simple IMIX": 7 small, 4 medium, 1 large


def state_id(counter):
    """The 8 bytes pf hands to divert for state number `counter` (htobe64, sys/netpfil/pf)."""
    return LB.state_id_bytes(counter)


class DSock:
    _next = 1

    def __init__(self, conn, pid, fd, comm, service, ino=None):
        self.id = DSock._next
        DSock._next += 1
        self.conn = conn
        self.pid, self.fd, self.comm, self.service = pid, fd, comm, service
        self.ino = ino                  # inode of the process's end: found in /proc/PID/fd
        self.kaddr = 0xfffff80012000000 + self.id * 0x400   # xso_so: the socket's kernel address
        self.lb = False
        self.port = None
        self.slot = None
        self.fake = False
        self.packets = 0
        self.closed = False
        self.rcv_cc = 0                 # bytes in the receive buffer (sb_cc)
        self.queue = []                 # [packet id, bytes, tee] not read yet, in order


class Group:
    """A divert port: a load-balancing group (members, compact) and/or one plain socket."""

    def __init__(self, port):
        self.port = port
        self.members = []
        self.plain = None


class Event:
    """A divert rule made live on `port` while the group there had `count` sockets.

    It is incomplete if the group then grows while the rules stay live (sockets were still being
    bound: the mapping of flows changes under them), or if the count declared for the port with
    `twinctl expect` at the time of the load was larger. Once no rule diverts to the port any more
    the event is closed (also at a reboot): a group rebuilt after its rules were withdrawn, after
    `pfctl -d`, or in the next boot does not make the earlier load incomplete.
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
        self.traffic_error = None
        self.expect = {}
        self.faults = {}
        self.epoch = 0
        self.seq = 0
        self.flow_uid = 0
        self.reset_state(full=True)

    # ------------------------------------------------------------------ state
    def reset_state(self, full=False):
        """Fresh kernel memory (a reboot when not `full`); counters survive a reboot."""
        with self.lock:
            if not full:
                # what the report judged during the ending boot stays counted
                n, details = self._undiverted()
                self.undiverted_carried += n
                self.undiverted_details_carried = (self.undiverted_details_carried + details)[:DETAILS_MAX]
                for ev in self.events:
                    ev.open = False
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
            self.pf_skip = set()
            self.ipfw_rules = []
            self.ipfw_disabled = set()
            self.flows = {}
            self.inflight = {}      # packet id -> (pkt, rule nr, flow, socket id, tee)
            self.pktseq = 0
            # what rules diverted during this boot: the twin's idea of the "wanted" ruleset
            self.key_hist = {}      # rule key -> {"first": seq, "last_end": seq, "live": bool}
            self.live_keys = set()
            self.memory = {}        # rule key -> rule object, every divert rule live this boot
            self.wanted_keys = set()
            self.pending = {}       # flow uid -> [(seq, rule keys)] packets passed undiverted
            self.epoch += 1
            if full:
                self.counters = dict(packets=0, flows=0, diverted=0, reinjected=0, blocked=0, passed=0,
                                     dropped_noport=0, dropped_nodivert=0, dropped_full=0,
                                     swallowed=0, flows_remapped=0, withdraw_violations=0)
                self.events = []
                self.rule_hits = {}
                self.sock_hist = {}
                self.divstat = dict(diverted=0, noport=0, outbound=0, inbound=0)
                self.undiverted_carried = 0
                self.undiverted_details_carried = []
                self.details = dict(withdraw_violations=[], swallowed=[], flows_remapped=[], dropped_full=[],
                                    dropped_noport=[])

    def shutdown_rules(self):
        """Shutdown: rules, states and what is in flight go with the kernel's memory. Withdrawn
        first, without judging: the shutdown itself is neither an I2 violation nor a bypass,
        and packets that pass while the host goes down are not undiverted flows."""
        with self.lock:
            n, details = self._undiverted()
            self.undiverted_carried += n
            self.undiverted_details_carried = (self.undiverted_details_carried + details)[:DETAILS_MAX]
            self.pending, self.memory, self.key_hist, self.live_keys = {}, {}, {}, set()
            for ev in self.events:
                ev.open = False
            self.pf_main, self.pf_anchors, self.pf_states = [], {}, {}
            self.ipfw_rules, self.ipfw_disabled = [], set()
            self.inflight = {}
            for s in self.socks.values():
                s.queue, s.rcv_cc = [], 0

    def load_module(self, m):
        self.modules.add(m)
        if m in self.mod_order:
            self.mod_order.remove(m)
        self.mod_order.append(m)

    def _detail(self, kind, item):
        lst = self.details[kind]
        if len(lst) < DETAILS_MAX:
            lst.append(item)

    # ------------------------------------------------------------------ groups
    def _group_size(self, port):
        g = self.groups.get(port)
        if not g:
            return 0
        return len(g.members) + (1 if g.plain else 0)

    def _bind(self, s, port, lb):
        if s.port is not None:
            return errno.EINVAL
        if port <= 0 or port > 65535:
            return errno.EINVAL
        g = self.groups.get(port)
        if lb:
            # An LB socket skips the in-use check: it may join a port a plain socket holds (V).
            if g is not None and len(g.members) >= LB_MAX:
                return errno.ENOSPC           # the socket stays unbound (V)
            if g is None:
                g = self.groups[port] = Group(port)
            s.slot = len(g.members)          # a new member takes the next slot (dl_count++)
            g.members.append(s)
        else:
            if g is not None and (g.plain is not None or g.members):
                return errno.EADDRINUSE
            if g is None:
                g = self.groups[port] = Group(port)
            g.plain = s
        s.port, s.lb = port, lb
        size = self._group_size(port)
        for ev in self.events:
            if ev.port == port and ev.open and size > ev.max_after:
                ev.max_after = size
        return 0

    def _states_diverting_to(self, port):
        return sum(1 for st in self.pf_states.values()
                   if st["rule"].action == "pass" and st["rule"].divert_port == port)

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
                elif s in g.members:
                    # div_lbgroup_detach: the last member moves into the freed slot, count - 1 (V)
                    g.members = LB.compact(g.members, g.members.index(s))
                    for i, m in enumerate(g.members):
                        m.slot = i
                # I2: a socket of a port closed while a live rule, or a pf state that such a
                # rule created, still diverts to it
                reason = None
                if s.port in self.live_ports():
                    reason = "rule"
                states = self._states_diverting_to(s.port)
                if states and reason is None:
                    reason = "states"
                if reason:
                    self.counters["withdraw_violations"] += 1
                    self._detail("withdraw_violations", {"port": s.port, "socket": s.id, "pid": s.pid,
                                                         "reason": reason, "states": states})
                if not g.members and g.plain is None:
                    del self.groups[s.port]       # last member gone: the group is freed
        # packets still queued in the receive buffer are freed with the socket
        for pid, _n, tee in s.queue:
            ent = self.inflight.pop(pid, None)
            if ent is not None and not tee:
                self.counters["swallowed"] += 1
                self._detail("swallowed", {"port": s.port, "socket": s.id, "why": "freed unread with its socket"})
        s.queue, s.rcv_cc = [], 0
        self.sock_hist.setdefault(s.id, {"port": s.port, "slot": s.slot, "pid": s.pid,
                                         "packets": s.packets})["packets"] = s.packets
        try:
            s.conn.close()
        except OSError:
            pass
        self.cond.notify_all()

    def consumed(self, s, nbytes):
        """The consumer read one packet of `nbytes` (recvfrom): its buffer space is free again."""
        with self.lock:
            if s.queue:
                s.queue.pop(0)
            s.rcv_cc = max(0, s.rcv_cc - nbytes - SOCKADDR_LEN)

    def reap_dead(self):
        """Sockets whose every descriptor is gone: the kernel closes them.  A dropped
        connection is readable with EOF; check without blocking."""
        import select
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
        """(anchor, rule) of every rule pf evaluates: main, and anchors called from it."""
        out = []
        if "pf" not in self.modules or not self.pf_enabled:
            return out
        seen = set()

        def walk(rules, where):
            for r in rules:
                if r.action == "anchor":
                    if r.anchor in self.pf_anchors and r.anchor not in seen:
                        seen.add(r.anchor)
                        walk(self.pf_anchors[r.anchor], r.anchor)
                else:
                    out.append((where, r))
        walk(self.pf_main, "")
        return out

    def live_ports(self):
        ports = {r.divert_port for _a, r in self._pf_reachable() if r.divert_port and r.action == "pass"}
        if "ipfw" in self.modules:
            ports |= {r.arg for r in self.ipfw_rules
                      if r.action in ("divert", "tee") and r.set not in self.ipfw_disabled}
        return ports

    @staticmethod
    def pf_key(where, rule):
        return "pf %s: %s" % ("anchor " + where if where else "main", rule.text())

    @staticmethod
    def ipfw_key(rule):
        return "ipfw: " + rule.text()

    def _live_divert_rules(self):
        out = {}
        for where, r in self._pf_reachable():
            if r.action == "pass" and r.divert_port:
                out[self.pf_key(where, r)] = r
        if "ipfw" in self.modules:
            for r in self.ipfw_rules:
                if r.action == "divert" and r.set not in self.ipfw_disabled:
                    out[self.ipfw_key(r)] = r
        return out

    def _track_rules(self):
        """Record when each divert rule came into force and went out of force (this boot)."""
        self.seq += 1
        now = self._live_divert_rules()
        for key, r in now.items():
            self.memory[key] = r
            h = self.key_hist.setdefault(key, {"first": self.seq, "last_end": 0, "live": False})
            h["live"] = True
        for key in self.live_keys - set(now):
            h = self.key_hist[key]
            h["live"] = False
            h["last_end"] = self.seq
        self.live_keys = set(now)

    def _note_change(self, before, touched, what):
        after = self.live_ports()
        for ev in self.events:
            if ev.port not in after:
                ev.open = False
        for port in sorted((after - before) | (set(touched) & after)):
            self.events.append(Event(port, self._group_size(port), what, self.expect.get(port, 0)))
        self._track_rules()

    def incomplete_events(self):
        out = []
        for ev in self.events:
            want = max(ev.max_after, ev.expected)
            if ev.count < want:
                out.append({"port": ev.port, "sockets_at_load": ev.count, "sockets_wanted": want,
                            "what": ev.what, "time": ev.t})
        return out

    # ------------------------------------------------------------------ undiverted flows
    def _wanted_around(self, key, seq):
        """Was the divert rule `key` in force before `seq`, and in force (or wanted) after it?"""
        h = self.key_hist.get(key)
        if h is None or h["first"] >= seq:
            return False
        return h["live"] or h["last_end"] > seq or key in self.wanted_keys

    def _note_undiverted(self, pkt, flow, seq):
        """A packet of `flow` passed without being diverted: remember which divert rules should
        have taken it (the rule that diverted the flow before; for a packet no state decided,
        every divert rule of this boot that matches it). Judged at report time."""
        if flow is None or pkt.get("skipped"):
            return
        keys = []
        mine = flow.get("diverted_by")
        if mine:
            keys.append(mine)
        if not pkt.get("stateful"):
            for key, r in self.memory.items():
                if key != mine and r.matches(pkt):
                    keys.append(key)
        if keys:
            lst = self.pending.setdefault(flow["uid"], [])
            if len(lst) < 16:
                lst.append((seq, tuple(keys)))

    def _undiverted(self):
        n, details = 0, []
        for uid, events in self.pending.items():
            for seq, keys in events:
                hit = next((k for k in keys if self._wanted_around(k, seq)), None)
                if hit:
                    n += 1
                    if len(details) < DETAILS_MAX:
                        details.append({"flow": uid, "rule": hit})
                    break
        return n, details

    # ------------------------------------------------------------------ packet path
    def process(self, pkt, flow=None):
        """Run one packet through pf (then ipfw).  Returns a verdict string."""
        with self.lock:
            self.counters["packets"] += 1
            self.seq += 1
            seq = self.seq
            verdict = "pass"
            if "pf" in self.modules and self.pf_enabled:
                if pkt["iface"] in self.pf_skip:
                    pkt["skipped"] = True          # set skip on IF: pf does not look (V)
                else:
                    verdict = self._pf_test(pkt, flow)
                    if verdict != "pass":
                        return verdict
            if "ipfw" in self.modules:
                verdict = self._ipfw_chk(pkt, flow, 0)
            if verdict == "pass":
                self.counters["passed"] += 1
                self._note_undiverted(pkt, flow, seq)
            return verdict

    def _hit(self, key):
        self.rule_hits[key] = self.rule_hits.get(key, 0) + 1

    def _pf_eval(self, rules, pkt, depth=0):
        """(last matching rule, quick, anchor rule): the anchor rule is the rule of the main
        ruleset whose anchor the match was found in, None for a rule of the main ruleset itself
        (pf_step_into_anchor sets `a` on entering an anchor from depth 0, pf_step_out_of_anchor
        clears it on returning there; pf_test_rule keeps `*am = a` with the match)."""
        last, last_anchor = None, None
        for r in rules:
            if r.action == "anchor":
                if depth < 8 and r.anchor in self.pf_anchors and r.matches(pkt):
                    m, q, _inner = self._pf_eval(self.pf_anchors[r.anchor], pkt, depth + 1)
                    if m is not None:
                        last = m
                        last_anchor = r if depth == 0 else None
                        if q or r.quick:
                            return last, True, last_anchor
                continue
            r.evaluations += 1
            if r.matches(pkt):
                last, last_anchor = r, None
                if r.quick:
                    return last, True, last_anchor
        return last, False, last_anchor

    def _pf_test(self, pkt, flow):
        key = (pkt["af"], pkt["proto"], pkt["src"], pkt.get("sport"), pkt["dst"], pkt.get("dport"))
        rkey = (pkt["af"], pkt["proto"], pkt["dst"], pkt.get("dport"), pkt["src"], pkt.get("sport"))
        st = self.pf_states.get(key) or self.pf_states.get(rkey)
        sid = LB.STATELESS_ID
        if st is not None:
            rule, sid = st["rule"], st["id"]      # a state keeps its rule (r = s->rule.ptr)
            pkt["stateful"] = True
        else:
            rule, _quick, anchor_rule = self._pf_eval(self.pf_main, pkt)
            if rule is None:
                return "pass"                    # pf's default rule passes
            if rule.action == "block":
                rule.packets[0 if pkt["dir"] == "in" else 1] += 1
                self._hit(rule.text())
                self.counters["blocked"] += 1
                return "block"
            if rule.keep_state and not (pkt["proto"] == 6 and "S" not in pkt.get("flags", "S")):
                counter = self.pf_counter        # alloc_unr64(&V_pf_stateid)
                self.pf_counter += 1
                # the state keeps its rule and the anchor rule it was found through (s->rule,
                # s->anchor): pfctl -ss -vv prints their numbers as they were when it was created
                st = {"id": state_id(counter), "counter": counter, "rule": rule, "anchor": anchor_rule,
                      "key": key, "packets": 0, "bytes": 0, "iface": pkt["iface"], "dir": pkt["dir"],
                      "created": time.time(), "last": time.time()}
                self.pf_states[key] = st
                rule.states_cur += 1
                rule.states_tot += 1
                sid = st["id"]
                if flow is not None:
                    flow["state"] = key
                    flow["counter"] = counter
        rule.packets[0 if pkt["dir"] == "in" else 1] += 1
        rule.bytes[0 if pkt["dir"] == "in" else 1] += pkt.get("len", 60)
        if st is not None:
            st["packets"] += 1                   # the generator's packets all go one way
            st["bytes"] += pkt.get("len", 60)
            st["last"] = time.time()
        self._hit(rule.text())
        if rule.divert_port and not pkt.get("looped"):
            # pf diverts both families (one pf_test; ip_divert.c reinjects IPv6 too) (V)
            if "ipdivert" not in self.modules:
                # "pf: divert(4) is not loaded": dropped
                self.counters["dropped_nodivert"] += 1
                return "drop-nodivert"
            return self._divert(rule.divert_port, sid, pkt, flow, 0,
                                self.pf_key(getattr(rule, "where", ""), rule))
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
                # ipfw hands no flow identifier: id 0, the one stateless slot (V)
                if r.action == "tee":
                    self._divert(r.arg, LB.STATELESS_ID, dict(pkt, tee=True), None, r.num, None)
                    continue
                return self._divert(r.arg, LB.STATELESS_ID, pkt, flow, r.num, self.ipfw_key(r))
        # rule 65535: deny ip from any to any (net.inet.ip.fw.default_to_accept=0)
        self._hit("ipfw 65535 deny ip from any to any")
        self.counters["blocked"] += 1
        return "block"

    def _divert(self, port, sid, pkt, flow, rule_nr, key):
        self.divstat["diverted"] += 1
        g = self.groups.get(port)
        target = None
        slot = None
        if g is not None and g.members:
            # divert_packet: dl_dcb[jenkins_hash(&id, 8, 0) % count] (V)
            slot = LB.select_slot(sid, len(g.members))
            target = g.members[slot]
        elif g is not None and g.plain is not None:
            target = g.plain
        if target is None:
            self.counters["dropped_noport"] += 1
            self._detail("dropped_noport", {"port": port, "rule": key, "flow": flow.get("uid") if flow else None,
                                            "stateful": bool(pkt.get("stateful")), "time": time.time()})
            self.divstat["noport"] += 1
            return "drop-noport"
        self.pktseq += 1
        pid = self.pktseq
        data = _build_packet(pkt, pid)
        need = len(data) + SOCKADDR_LEN
        if target.rcv_cc + need > RECVSPACE:
            # sbappendaddr_locked fails: the receive buffer is full (soroverflow)
            self.counters["dropped_full"] += 1
            self._detail("dropped_full", {"port": port, "socket": target.id, "queued": target.rcv_cc})
            return "drop-full"
        addr = socket.inet_aton("0.0.0.0") if pkt["dir"] == "out" else socket.inet_aton("192.0.2.1")
        try:
            target.conn.send(b"P" + struct.pack("!H", rule_nr) + addr + data, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            self.counters["dropped_full"] += 1
            return "drop-full"
        target.rcv_cc += need
        target.queue.append((pid, len(data), bool(pkt.get("tee"))))
        target.packets += 1
        self.counters["diverted"] += 1
        if flow is not None and not pkt.get("tee"):
            prev = flow.get("sock")
            if prev is not None and prev != target.id and not flow.get("remapped"):
                flow["remapped"] = True
                self.counters["flows_remapped"] += 1
                self._detail("flows_remapped", {"flow": flow.get("uid"), "port": port,
                                                "from_socket": prev, "to_socket": target.id})
            flow["sock"] = target.id
            flow["slot"] = slot
            flow["port"] = port
            flow["diverted_by"] = key
        self.inflight[pid] = (dict(pkt), rule_nr, flow, target.id, bool(pkt.get("tee")))
        if len(self.inflight) > INFLIGHT_MAX:
            for k in list(self.inflight)[:INFLIGHT_MAX // 5]:
                if not self.inflight.pop(k)[4]:
                    self.counters["swallowed"] += 1
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
            pkt, nr, flow, _sock, _tee = ent
            if "ipfw" in self.modules and nr:
                # reinjected packets resume at the rule after the one in sin_port
                v = self._ipfw_chk(dict(pkt, looped=True), None, rule_nr)
                if v == "pass":
                    self.counters["passed"] += 1
            else:
                self.counters["passed"] += 1
            self.cond.notify_all()

    def drain(self, timeout):
        """Wait until every packet in flight now is reinjected; those that are not after
        `timeout` seconds count as swallowed (diverted, never reinjected)."""
        with self.lock:
            snap = {pid for pid, ent in self.inflight.items() if not ent[4]}
            ok = self.cond.wait_for(lambda: not (snap & self.inflight.keys()), timeout)
            left = snap & self.inflight.keys()
            for pid in sorted(left):
                ent = self.inflight.pop(pid)
                self.counters["swallowed"] += 1
                self._detail("swallowed", {"port": ent[0].get("dport"), "socket": ent[3],
                                           "why": "not reinjected within %gs" % timeout})
            return {"ok": ok, "inflight": len(self.inflight), "swallowed_now": len(left)}

    # ------------------------------------------------------------------ traffic
    def traffic_start(self, rate, long_share=0.1, crash_after=None, long_duration=(20, 60)):
        self.traffic_stop()
        self.traffic_error = None
        self.stop_traffic = threading.Event()
        t = threading.Thread(target=self._traffic, args=(rate, self.stop_traffic, long_share, crash_after,
                                                         long_duration), daemon=True)
        self.traffic_thread = t
        t.start()

    def traffic_stop(self):
        """Stop the generator; its error if it died."""
        self.stop_traffic.set()
        t = self.traffic_thread
        if t is not None:
            t.join()
        self.traffic_thread = None
        return self.traffic_error

    def traffic_problem(self):
        """Why the generator is not doing its job, or None."""
        if self.traffic_error:
            return self.traffic_error
        t = self.traffic_thread
        if t is not None and not t.is_alive() and not self.stop_traffic.is_set():
            return "the traffic generator thread ended without being stopped"
        return None

    def _traffic(self, rate, stop, long_share, crash_after, long_duration=(20, 60)):
        """New flows at `rate` per second; most are short (3-8 packets, one per tick), a share
        is long-lived (`long_duration` seconds, by default 20-60, one packet every 1-3 s), so a
        remap during a run shows."""
        lo_ticks, hi_ticks = int(long_duration[0] / 0.05), int(long_duration[1] / 0.05)
        active = []
        try:
            rnd = random.Random(hash(self.name) & 0xffff)
            tick = 0.05
            carry = 0.0
            tickno = 0
            sent = 0
            while not stop.wait(tick):
                tickno += 1
                carry += rate * tick
                n, carry = int(carry), carry - int(carry)
                with self.lock:
                    for _ in range(n):
                        f = self.new_flow(rnd)
                        if rnd.random() < long_share:
                            f["interval"] = rnd.randint(20, 60)             # ticks: 1-3 s
                            f["left"] = max(2, rnd.randint(lo_ticks, hi_ticks) // f["interval"])
                        else:
                            f["interval"] = 1
                        heapq.heappush(active, (tickno, f["uid"], f))
                    while active and active[0][0] <= tickno:
                        _, _, f = heapq.heappop(active)
                        f["len"] = 60 if f["first"] else rnd.choice(PACKET_SIZES)
                        self.flow_packet(f)
                        sent += 1
                        if f["left"] > 0:
                            heapq.heappush(active, (tickno + f["interval"], f["uid"], f))
                        else:
                            self.end_flow(f)
                    if crash_after is not None and sent >= crash_after:
                        raise RuntimeError("traffic generator failure injected after %d packets" % sent)
        except Exception:
            self.traffic_error = "traffic generator of %s died:\n%s" % (self.name, traceback.format_exc())
        finally:
            with self.lock:
                for _, _, f in active:
                    self.end_flow(f)

    def _candidates(self):
        rules = [r for _a, r in self._pf_reachable() if r.action == "pass"]
        if "ipfw" in self.modules:
            rules += [r for r in self.ipfw_rules if r.set not in self.ipfw_disabled]
        return rules

    def new_flow(self, rnd, spec=None):
        if spec is None:
            spec = self._random_spec(rnd)
        self.counters["flows"] += 1
        self.flow_uid += 1
        f = dict(spec)
        if "left" not in f:
            f["left"] = rnd.randint(3, 8)
        f["first"] = True
        f["uid"] = self.flow_uid
        f["epoch"] = self.epoch
        self.flows[f["uid"]] = f
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
        if f.get("epoch") != self.epoch:
            # a reboot: the flow's state, socket and diverting rule were the last boot's
            for k in ("sock", "slot", "port", "diverted_by", "state", "counter", "remapped"):
                f.pop(k, None)
            f["epoch"] = self.epoch
        pkt = {k: f[k] for k in ("af", "proto", "src", "dst", "sport", "dport", "iface", "dir")}
        pkt["len"] = f.get("len", 60)
        if f["proto"] == 6:
            pkt["flags"] = "S" if f["first"] else "A"
        f["first"] = False
        f["left"] -= 1
        return self.process(pkt, f)

    def end_flow(self, f):
        self.flows.pop(f.get("uid"), None)
        key = f.get("state")
        if key and key in self.pf_states and f.get("epoch") == self.epoch:
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
            und, und_details = self._undiverted()
            per_port = {}
            for v in socks.values():
                if v["port"] is not None:
                    per_port[str(v["port"])] = per_port.get(str(v["port"]), 0) + v["packets"]
            return dict(self.counters, incomplete_loads=len(inc), incomplete_load_details=inc,
                        flows_undiverted=self.undiverted_carried + und,
                        flows_undiverted_details=(self.undiverted_details_carried + und_details)[:DETAILS_MAX],
                        withdraw_violation_details=list(self.details["withdraw_violations"]),
                        swallowed_details=list(self.details["swallowed"]),
                        flows_remapped_details=list(self.details["flows_remapped"]),
                        dropped_full_details=list(self.details["dropped_full"]),
                        dropped_noport_details=list(self.details["dropped_noport"]),
                        sockets=socks, port_packets=per_port, rule_hits=dict(self.rule_hits),
                        groups={str(p): {"count": len(g.members), "plain": g.plain is not None,
                                         "members": [x.id for x in g.members]}
                                for p, g in self.groups.items()},
                        inflight=len(self.inflight), traffic_error=self.traffic_problem())


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
    """An IPv4 or IPv6 packet of about pkt["len"] bytes whose payload carries the packet id."""
    payload = MAGIC + struct.pack("!Q", pid)
    proto = pkt["proto"]
    if proto in (6, 17):
        l4 = struct.pack("!HH", pkt.get("sport") or 0, pkt.get("dport") or 0)
        l4 += b"\0" * (20 - 4 if proto == 6 else 4)
    else:
        l4 = struct.pack("!BBH", 8, 0, 0) + b"\0" * 4
    hlen = 20 if pkt["af"] == 4 else 40
    pad = max(0, int(pkt.get("len", 60)) - hlen - len(l4) - len(payload))
    body = l4 + b"\0" * pad + payload
    if pkt["af"] == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), pid & 0xffff, 0, 64, proto, 0,
                          socket.inet_aton(pkt["src"]), socket.inet_aton(pkt["dst"]))
    else:
        hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64,
                          socket.inet_pton(socket.AF_INET6, pkt["src"]),
                          socket.inet_pton(socket.AF_INET6, pkt["dst"]))
    return hdr + body
