"""Kernel daemon main: namespace set-up, request server, boot and reboot of a twin host."""
import ctypes
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twinlib import proto, commands  # noqa: E402
from twinlib.kernel import Kernel, DSock  # noqa: E402

BOOT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"
PR_SET_CHILD_SUBREAPER = 36


class Reaper:
    """The kernel daemon is the host's init: a child subreaper that collects every orphan
    (consumers started through daemon(8) end up here) and records exit statuses."""

    def __init__(self):
        self.status = {}
        self.cond = threading.Condition()
        self.ev = threading.Event()
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except Exception:
            pass
        threading.Thread(target=self._loop, daemon=True).start()

    def spawned(self):
        self.ev.set()

    def _loop(self):
        while True:
            try:
                pid, st = os.waitpid(-1, 0)      # blocks while the host has children
            except ChildProcessError:
                # no child right now; orphans may be re-parented to us later
                self.ev.wait(0.5)
                self.ev.clear()
                continue
            with self.cond:
                self.status[pid] = os.waitstatus_to_exitcode(st)
                self.cond.notify_all()

    def wait(self, pid, timeout=None):
        with self.cond:
            self.cond.wait_for(lambda: pid in self.status, timeout)
            return self.status.pop(pid, None)


class Server:
    def __init__(self, hostdir, name, flavour):
        self.k = Kernel(hostdir, name, flavour)
        self.hostdir = hostdir
        self.reaper = Reaper()
        self.boot_lock = threading.Lock()
        self.booted = threading.Event()
        self.flows_kept = {}

    # ------------------------------------------------------------------ boot
    def ns_pids(self):
        me = os.getpid()
        mine = os.readlink("/proc/self/ns/mnt")
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                if os.readlink("/proc/%s/ns/mnt" % d) == mine:
                    out.append(int(d))
            except OSError:
                pass
        return out

    def kill_all(self):
        """Every process of the host ends (as at shutdown); wait for each to be gone."""
        for _ in range(5):
            pids = self.ns_pids()
            if not pids:
                break
            fds = []
            for p in pids:
                try:
                    fds.append(os.pidfd_open(p))
                except OSError:
                    pass
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            for fd in fds:
                import select
                select.select([fd], [], [], 5)
                os.close(fd)
        self.k.reap_dead()
        # sockets of killed processes close as their descriptors go
        with self.k.lock:
            for s in list(self.k.socks.values()):
                if not _alive(s.pid):
                    self.k._close(s)

    def boot(self):
        k = self.k
        with k.lock:
            k.boot_time = int(time.time())
        # loader(8): modules named with NAME_load="YES" in the files of loader_conf_files, by default
        # "/boot/device.hints /boot/loader.conf /boot/loader.conf.local" (stand/defaults/loader.conf)
        for conf in ("/boot/loader.conf", "/boot/loader.conf.local"):
            try:
                for line in open(conf):
                    line = line.split("#", 1)[0].strip()
                    if "_load=" in line:
                        n, _, v = line.partition("_load=")
                        if v.strip().strip('"').upper() == "YES" and n in commands.MODFILES:
                            with k.lock:
                                k.load_module(n)
            except OSError:
                pass
        with open(os.path.join(self.hostdir, "console.log"), "ab") as log:
            log.write(b"--- boot %d\n" % int(time.time()))
            log.flush()
            p = subprocess.Popen(["/bin/sh", "/etc/rc", "autoboot"], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, cwd="/",
                                 env={"PATH": BOOT_PATH, "HOME": "/", "TWIN_HOST_DIR": self.hostdir})
            self.reaper.spawned()
            self.reaper.wait(p.pid, 300)
            p.returncode = 0
        self.booted.set()

    def reboot(self):
        with self.boot_lock:
            k = self.k
            k.shutdown_rules()
            self.kill_all()
            with k.lock:
                k.reset_state(full=False)
            # rc's cleanvar: stale pid files go
            for f in os.listdir("/var/run"):
                if f.endswith(".pid"):
                    try:
                        os.unlink(os.path.join("/var/run", f))
                    except OSError:
                        pass
            self.boot()

    # ------------------------------------------------------------------ serving
    def serve(self, ready_fd):
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ls.bind(proto.address(self.hostdir))
        ls.listen(256)
        with open(os.path.join(self.hostdir, "kernel.pid"), "w") as f:
            f.write(str(os.getpid()))
        threading.Thread(target=self._first_boot, args=(ready_fd,), daemon=True).start()
        while True:
            c, _ = ls.accept()
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def _first_boot(self, ready_fd):
        try:
            self.boot()
        finally:
            if ready_fd is not None:
                os.write(ready_fd, b"ready\n")
                os.close(ready_fd)

    def handle(self, c):
        try:
            try:
                c.setsockopt(socket.SOL_SOCKET, 32, 8 * 1024 * 1024)   # SO_SNDBUFFORCE
            except OSError:
                pass
            data = c.recv(proto.MAXMSG * 64)
            if not data:
                c.close()
                return
            req = json.loads(data[1:])
            if req.get("op") == "socket":
                return self.divert_conn(c, req)
            try:
                rep = self.control(req)
            except Exception as e:
                rep = {"error": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()}
            try:
                c.send(b"J" + json.dumps(rep).encode())
            except OSError:
                pass
            c.close()
        except Exception:
            traceback.print_exc()
            c.close()

    def control(self, req):
        k = self.k
        op = req["op"]
        if op == "cmd":
            rc, out, err = commands.dispatch(k, req["cmd"], req.get("argv", []), req.get("files"), req.get("stdin"))
            return {"rc": rc, "stdout": out, "stderr": err}
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "booted": self.booted.is_set()}
        if op == "report":
            return k.report()
        if op == "traffic_start":
            k.traffic_start(float(req.get("rate", 20)), float(req.get("long_share", 0.1)), req.get("crash_after"),
                            tuple(req.get("long_duration") or (20, 60)))
            return {"ok": True}
        if op == "traffic_stop":
            problem = k.traffic_problem()
            err = k.traffic_stop() or problem
            return {"ok": not err, "traffic_error": err}
        if op == "expect":
            with k.lock:
                k.expect[int(req["port"])] = int(req["sockets"])
            return {"ok": True}
        if op == "fault":
            with k.lock:
                if req.get("clear"):
                    k.faults.pop(req["service"], None)
                else:
                    k.faults.setdefault(req["service"], {}).update(req["fault"])
            return {"ok": True}
        if op == "fault_get":
            with k.lock:
                return dict(k.faults.get(req.get("service") or "", {}))
        if op == "suricata_knobs":
            # the host's files are this daemon's (it runs in the host's mount namespace)
            path = "/etc/twin-suricata.json"
            try:
                with open(path) as f:
                    knobs = json.load(f)
            except (OSError, ValueError):
                knobs = {}
            knobs.update(req.get("knobs") or {})
            with open(path, "w") as f:
                json.dump(knobs, f, sort_keys=True)
            return {"ok": True, "knobs": knobs}
        if op == "reboot":
            self.reboot()
            return {"ok": True}
        if op == "flow":
            # a deterministic flow for tests: n packets through the packet path
            with k.lock:
                return self._flow(req["flow"], int(req.get("packets", 1)), req.get("name"), req.get("end", False))
        if op == "flows":
            # several deterministic flows in one request: flow i has source port sport + i
            with k.lock:
                base = dict(req["flow"])
                out = []
                for i in range(int(req["count"])):
                    spec = dict(base, sport=int(base.get("sport", 20000)) + i)
                    name = "%s%d" % (req["name"], i) if req.get("name") else None
                    out.append(self._flow(spec, int(req.get("packets", 1)), name, req.get("end", False)))
                return {"flows": out}
        if op == "flow_more":
            with k.lock:
                f = self.flows_kept[req["name"]]
                f["left"] = int(req.get("packets", 1))
                verdicts = []
                while f["left"] > 0:
                    verdicts.append(k.flow_packet(f))
                if req.get("end"):
                    k.end_flow(f)
                    del self.flows_kept[req["name"]]
                return self._flow_reply(f, verdicts)
        if op == "drain":
            # wait until consumers have reinjected what is in flight; the rest is swallowed
            return k.drain(float(req.get("timeout", 10)))
        if op == "traffic_wait":
            # wait until the generator thread ends by itself (tests of a generator that fails)
            t = k.traffic_thread
            if t is not None:
                t.join(float(req.get("timeout", 10)))
            return {"alive": bool(t is not None and t.is_alive())}
        if op == "wait_counter":
            # wait for an event of the packet path: a counter reaching a value (or timeout)
            name, least = req["counter"], int(req["at_least"])
            with k.lock:
                ok = k.cond.wait_for(lambda: k.counters[name] >= least, float(req.get("timeout", 10)))
                return {"ok": ok, "value": k.counters[name]}
        if op == "wait_sockets":
            port, n = int(req["port"]), int(req["count"])
            with k.lock:
                def cond():
                    k.reap_dead()
                    return k._group_size(port) == n
                ok = k.cond.wait_for(cond, float(req.get("timeout", 10)))
                return {"ok": ok, "count": k._group_size(port)}
        if op == "state":
            with k.lock:
                k.reap_dead()
                return {"modules": sorted(k.modules), "pf_enabled": k.pf_enabled,
                        "anchors": sorted(k.pf_anchors), "live_ports": sorted(k.live_ports()),
                        "groups": {str(p): k._group_size(p) for p in k.groups},
                        "slots": {str(p): [m.id for m in g.members] for p, g in k.groups.items()},
                        "states": len(k.pf_states), "pf_counter": k.pf_counter, "pf_since": k.pf_since,
                        "pf_skip": sorted(k.pf_skip)}
        if op == "shutdown":
            k.traffic_stop()
            k.shutdown_rules()
            self.kill_all()
            threading.Timer(0, lambda: os._exit(0)).start()
            return {"ok": True}
        raise ValueError("unknown op %r" % op)

    def _flow(self, spec, packets, name, end):
        k = self.k
        f = k.new_flow(None, dict(spec, left=packets))
        verdicts = []
        while f["left"] > 0:
            verdicts.append(k.flow_packet(f))
        if end:
            k.end_flow(f)
        else:
            self.flows_kept[name or str(f["uid"])] = f
        return self._flow_reply(f, verdicts)

    @staticmethod
    def _flow_reply(f, verdicts):
        return {"verdicts": verdicts, "sock": f.get("sock"), "slot": f.get("slot"), "port": f.get("port"),
                "counter": f.get("counter"), "uid": f.get("uid")}

    # ------------------------------------------------------------------ divert sockets
    def divert_conn(self, c, req):
        k = self.k
        if "ipdivert" not in k.modules:
            # PF_DIVERT is registered by ipdivert.ko; without it socket() fails (I)
            c.send(b"J" + json.dumps({"errno": errno.EAFNOSUPPORT}).encode())
            c.close()
            return
        if req.get("euid", 0) != 0:
            c.send(b"J" + json.dumps({"errno": errno.EPERM}).encode())   # PRIV_NETINET_DIVERT
            c.close()
            return
        s = DSock(c, req.get("pid", 0), req.get("fd", 3), req.get("comm", "?"), req.get("service"), req.get("ino"))
        with k.lock:
            k.socks[s.id] = s
        c.send(b"J" + json.dumps({"ok": True, "id": s.id}).encode())
        while True:
            try:
                data = c.recv(proto.MAXMSG)
            except OSError:
                data = b""
            if not data:
                with k.lock:
                    k._close(s)
                return
            kind = data[:1]
            if kind == b"S":
                rule_nr = struct.unpack("!H", data[1:3])[0]
                k.reinject(s, rule_nr, data[7:])
                continue
            if kind == b"R":
                k.consumed(s, struct.unpack("!I", data[1:5])[0])
                continue
            msg = json.loads(data[1:])
            op = msg.get("op")
            if op == "bind":
                with k.lock:
                    f = k.faults.get(s.service or "", {})
                    only = f.get("bind_only")
                    if only is not None and msg.get("lb") is not None:
                        bound = sum(1 for x in k.socks.values()
                                    if x.service == s.service and x.port is not None and not x.fake)
                        if bound >= int(only):
                            s.fake = True
                            s.port = int(msg["port"])
                            c.send(b"J" + json.dumps({"ok": True}).encode())
                            continue
                    e = k._bind(s, int(msg["port"]), bool(msg.get("lb")))
                    k.cond.notify_all()
                c.send(b"J" + json.dumps({"errno": e} if e else {"ok": True}).encode())
            elif op == "close":
                with k.lock:
                    k._close(s)
                return
            else:
                c.send(b"J" + json.dumps({"errno": errno.EOPNOTSUPP}).encode())


def _alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def setup_mounts(hostdir, standins):
    fs = os.path.join(hostdir, "fs")

    def ov(target, lower, name):
        up, wk = os.path.join(fs, name + ".up"), os.path.join(fs, name + ".work")
        os.makedirs(up, exist_ok=True)
        os.makedirs(wk, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, up, wk), target], check=True)
    ov("/etc", "/etc", "etc")
    ov("/usr/local", "/usr/local", "local")
    ov("/run", "/run", "run")
    # /var/db (the boot gate's state, pkg's database) and /var/log are per host, as on FreeBSD.
    ov("/var", "/var", "var")
    os.makedirs("/boot", exist_ok=True)
    subprocess.run(["mount", "--bind", os.path.join(fs, "boot"), "/boot"], check=True)
    # /conf: OPNsense's configuration (config.xml, backup/); an empty directory on FreeBSD hosts
    os.makedirs(os.path.join(fs, "conf"), exist_ok=True)
    os.makedirs("/conf", exist_ok=True)
    subprocess.run(["mount", "--bind", os.path.join(fs, "conf"), "/conf"], check=True)
    # read-only overlays putting the command stand-ins first on FreeBSD's paths
    # (/sbin and /bin are symlinks to /usr/sbin and /usr/bin on the build machine)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s:/usr/sbin" % os.path.join(standins, "sbin"), "/usr/sbin"], check=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s:/usr/bin" % os.path.join(standins, "bin"), "/usr/bin"], check=True)


def main():
    hostdir, name, flavour, standins = sys.argv[1:5]
    ready_fd = int(sys.argv[5]) if len(sys.argv) > 5 else None
    os.setsid() if os.getpid() != os.getsid(0) else None
    setup_mounts(hostdir, standins)
    # The host's own UTS namespace (twinctl starts the kernel with unshare -u): gethostname(),
    # `hostname` and `uname -n` name the twin host, as rc.conf's hostname= does at boot on FreeBSD.
    socket.sethostname(name)
    os.chdir("/")
    srv = Server(hostdir, name, flavour)
    srv.serve(ready_fd)


if __name__ == "__main__":
    main()
