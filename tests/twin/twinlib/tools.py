"""User-side halves of the command stand-ins, run inside a twin host:
    python -I -S -c 'import sys; sys.path.insert(0, TWIN); from twinlib.tools import main; sys.exit(main())' NAME ARGS...
(imported rather than run as a script, so that its bytecode is cached: FreeBSD's tools are C programs that
start in a millisecond, and a stand-in should not make every command cost a compile; the OPNsense layer is
imported only by the commands that use it)
Kernel commands read the files they name here (in the host's filesystem) and hand them to
the host's kernel daemon; sysrc, service, daemon, reboot and configctl act locally."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twinlib import proto  # noqa: E402

RC_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


def _emit(rc, out, err):
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def kernel_cmd(name, argv):
    files, stdin = {}, None
    if name == "pfctl":
        for i, a in enumerate(argv):
            if a == "-f" and i + 1 < len(argv) or a.startswith("-") and a.endswith("f") and "-" != a and i + 1 < len(argv) and not a.startswith("--"):
                fn = argv[i + 1]
                if fn == "-":
                    stdin = sys.stdin.read()
                else:
                    t = _read(fn)
                    if t is not None:
                        files[fn] = t
        # combined flags such as -nf FILE or -a X -f FILE: normalise "-nf" into "-n -f"
        argv = _split_flags(argv, "a:F:f:k:o:s:t:T:x:")
    elif name == "ipfw":
        if argv and argv[-1].startswith("/"):
            t = _read(argv[-1])
            if t is not None:
                files[argv[-1]] = t
    rc, out, err = proto.run_cmd(name, argv, files, stdin)
    return _emit(rc, out, err)


def _split_flags(argv, spec):
    takes = {spec[i] for i in range(len(spec)) if i + 1 < len(spec) and spec[i + 1] == ":"}
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and len(a) > 2 and not a.startswith("--"):
            j = 1
            while j < len(a):
                c = a[j]
                if c in takes:
                    out.append("-" + c)
                    rest = a[j + 1:]
                    if rest:
                        out.append(rest)
                    else:
                        i += 1
                        if i < len(argv):
                            out.append(argv[i])
                    break
                out.append("-" + c)
                j += 1
        else:
            out.append(a)
            if a in ("-" + c for c in takes) and i + 1 < len(argv):
                i += 1
                out.append(argv[i])
        i += 1
    return out


# ---------------------------------------------------------------------------- sysrc
_ASSIGN = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$')


def _rc_files():
    return ["/etc/rc.conf", "/etc/rc.conf.local"]


def _parse_val(v):
    v = v.strip()
    if "#" in v and not v.startswith(('"', "'")):
        v = v.split("#", 1)[0].strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    m = re.match(r'^"([^"]*)"', v)
    return m.group(1) if m else v


def _rc_get(name, files):
    val = None
    for f in files:
        t = _read(f)
        if t is None:
            continue
        for line in t.splitlines():
            m = _ASSIGN.match(line)
            if m and m.group(1) == name:
                val = _parse_val(m.group(2))
    return val


def sysrc(argv):
    files = None
    nflag = eflag = xflag = iflag = cflag = qflag = False
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-f":
            files = (files or []) + [argv[i + 1]]
            i += 2
            continue
        if a.startswith("-") and len(a) > 1 and not args:
            for c in a[1:]:
                nflag |= c == "n"
                eflag |= c == "e"
                xflag |= c == "x"
                iflag |= c == "i"
                cflag |= c == "c"
                qflag |= c == "q"
            i += 1
            continue
        args.append(a)
        i += 1
    write_file = (files or ["/etc/rc.conf"])[-1]
    read_files = files or (["/etc/defaults/rc.conf"] + _rc_files())
    rc = 0
    for a in args:
        if "=" in a:
            name, _, val = a.partition("=")
            if name.endswith("+"):
                name = name[:-1]
                old = _rc_get(name, read_files) or ""
                val = (old + " " + val).strip() if val not in old.split() else old
            old = _rc_get(name, read_files)
            if cflag:
                if old != val:
                    rc = 1
                continue
            text = _read(write_file) or ""
            lines = text.splitlines()
            done = False
            for j, line in enumerate(lines):
                m = _ASSIGN.match(line)
                if m and m.group(1) == name:
                    lines[j] = '%s="%s"' % (name, val)
                    done = True
            if not done:
                lines.append('%s="%s"' % (name, val))
            os.makedirs(os.path.dirname(write_file), exist_ok=True)
            with open(write_file, "w") as f:
                f.write("\n".join(lines) + "\n")
            if not qflag:
                print("%s: %s -> %s" % (name, old if old is not None else "", val))
        elif xflag:
            # usr.sbin/sysrc/sysrc: a NAME without `=` is looked up (`f_sysrc_get "$NAME?"`) before
            # -x deletes it: an unset one is "unknown variable" and exit 1, even with -i or -q
            # (they hide only the message).
            if _rc_get(a, read_files) is None:
                if not (iflag or qflag):
                    sys.stderr.write("sysrc: unknown variable '%s'\n" % a)
                rc = 1
                continue
            text = _read(write_file) or ""
            lines = [l for l in text.splitlines() if not (_ASSIGN.match(l) and _ASSIGN.match(l).group(1) == a)]
            with open(write_file, "w") as f:
                f.write("\n".join(lines) + ("\n" if lines else ""))
        else:
            v = _rc_get(a, read_files)
            if cflag:
                if v is None:
                    rc = 1
                continue
            if v is None:
                if not (iflag or qflag):
                    sys.stderr.write("sysrc: unknown variable '%s'\n" % a)
                rc = 1  # usr.sbin/sysrc/sysrc: status=$FAILURE whether or not -i/-q hide the message
                continue
            if nflag:
                print(v)
            elif eflag:
                print('%s="%s"' % (a, v))
            else:
                print("%s: %s" % (a, v))
    return rc


# ---------------------------------------------------------------------------- service
def _rc_dirs():
    dirs = ["/etc/rc.d"]
    ls = _rc_get("local_startup", ["/etc/defaults/rc.conf", "/etc/rc.conf"]) or "/usr/local/etc/rc.d"
    dirs += ls.split()
    return dirs


def service(argv):
    if not argv or argv[0] in ("-h",):
        sys.stderr.write("usage: service [-j <jail name or id>] -e\n       service -R\n"
                         "       service [-j <jail name or id>] [-v] -l | -r\n"
                         "       service [-j <jail name or id>] [-v] [-E var=value] <rc.d script> start|stop|etc.\n")
        return 1
    if argv[0] in ("-l", "-e", "-r"):
        names = []
        for d in _rc_dirs():
            try:
                names += [os.path.join(d, n) for n in sorted(os.listdir(d))]
            except OSError:
                pass
        for p in names:
            if argv[0] == "-l":
                print(os.path.basename(p))
            elif argv[0] == "-e":
                import subprocess
                r = subprocess.run(["/bin/sh", p, "enabled"], env={"PATH": RC_PATH, "HOME": "/"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode == 0:
                    print(p)
            else:
                print(p)
        return 0
    extra = {}
    while argv and argv[0] in ("-E", "-v", "-q"):
        if argv[0] == "-E":
            k, _, v = argv[1].partition("=")
            extra[k] = v
            argv = argv[2:]
        else:
            argv = argv[1:]
    script = argv[0]
    for d in _rc_dirs():
        p = os.path.join(d, script)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            env = {"HOME": "/", "PATH": RC_PATH}
            env.update(extra)
            os.execve("/usr/bin/env", ["env", "-i"] + ["%s=%s" % kv for kv in env.items()] + [p] + argv[1:], os.environ)
    sys.stderr.write("%s does not exist in /etc/rc.d or the local startup\ndirectories (%s), or is not executable\n"
                     % (script, " ".join(_rc_dirs()[1:])))
    return 1


# ---------------------------------------------------------------------------- daemon
def daemon(argv):
    import getopt
    try:
        opts, cmd = getopt.getopt(argv, "+cfHo:p:P:r:Rs:St:T:u:m:l:", [])
    except getopt.GetoptError as e:
        sys.stderr.write("daemon: %s\n" % e)
        return 1
    o = {}
    for a, v in opts:
        o[a] = v
    if not cmd:
        sys.stderr.write("usage: daemon [-cfHrS] [-p child_pidfile] [-P supervisor_pidfile] ...\n")
        return 1
    pidfile = o.get("-p") or o.get("-P")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        if "-c" not in o:
            pass
        out = o.get("-o")
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        if out:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        else:
            os.dup2(null, 1)
            os.dup2(null, 2)
        os.set_inheritable(w, False)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            os.write(w, str(e).encode())
            os._exit(127)
    os.close(w)
    if pidfile:
        with open(pidfile, "w") as f:
            f.write("%d\n" % pid)
    msg = os.read(r, 4096)
    if msg:
        sys.stderr.write("daemon: execvp: %s: %s\n" % (cmd[0], msg.decode()))
        return 1
    return 0


# ---------------------------------------------------------------------------- reboot
def reboot(argv):
    try:
        proto.call({"op": "reboot"})
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------- configctl
REG = re.compile(r"registerAnchor\s*\(\s*['\"]([^'\"]+)['\"]\s*,\s*['\"]([a-z]+)['\"]\s*"
                 r"(?:,\s*(-?\d+)\s*)?(?:,\s*['\"](head|tail)['\"]\s*)?(?:,\s*(true|false)\s*)?\)")


def registered_anchors(plugdir="/usr/local/etc/inc/plugins.inc.d"):
    out = []
    try:
        names = sorted(n for n in os.listdir(plugdir) if n.endswith(".inc"))
    except OSError:
        names = []
    for n in names:
        text = _read(os.path.join(plugdir, n)) or ""
        for m in REG.finditer(text):
            if m.group(2) != "fw":
                continue
            out.append({"name": m.group(1), "prio": int(m.group(3) or 0),
                        "placement": m.group(4) or "tail", "quick": m.group(5) == "true"})
    return out


def generate_rules():
    anchors = registered_anchors()

    def lines(place):
        sel = sorted((a for a in anchors if a["placement"] == place), key=lambda a: a["prio"])
        return ['anchor "%s"%s' % (a["name"], " quick" if a["quick"] else "") for a in sel]
    body = ["# generated by the twin's configctl filter reload (filter_configure_sync)",
            "set skip on lo0"]
    body += lines("head")
    body += ['pass in quick on lo0 all no state label "loopback"',
             'block in log all label "Default deny / state violation rule"',
             'pass out log all keep state allow-opts label "let out anything from firewall host itself"']
    body += lines("tail")
    return "\n".join(body) + "\n"


def configctl(argv):
    args = [a for a in argv if not a.startswith("-")]
    if args[:2] == ["filter", "reload"]:
        d = "/var/run/twin"
        os.makedirs(d, exist_ok=True)
        cur = os.path.join(d, "rules.debug")
        if os.path.exists(cur):
            os.replace(cur, cur + ".old")
        with open(cur, "w") as f:
            f.write(generate_rules())
        rc, out, err = proto.run_cmd("pfctl", ["-f", cur], {cur: _read(cur)})
        if rc != 0 and os.path.exists(cur + ".old"):
            proto.run_cmd("pfctl", ["-f", cur + ".old"], {cur + ".old": _read(cur + ".old")})
        print("OK")
        return 0
    if args[:2] == ["filter", "sync"] or args[:1] == ["firmware"]:
        print("OK")
        return 0
    if args[:2] == ["template", "reload"] and len(args) == 3:
        try:
            from twinlib import opnsense
            print(opnsense.template_reload(args[2]))
        except (OSError, ValueError) as exc:
            # configd logs a template error and answers with it
            print("Execute error: %s" % exc)
        return 0
    if args[:1] == ["ids"] and len(args) == 2:
        from twinlib import opnsense
        print(opnsense.ids(args[1]))
        return 0
    print("Action not found")
    return 0


def rcorder(argv):
    skip, keep, files = set(), set(), []
    i = 0
    while i < len(argv):
        if argv[i] == "-s":
            skip.add(argv[i + 1]); i += 2; continue
        if argv[i] == "-k":
            keep.add(argv[i + 1]); i += 2; continue
        files.append(argv[i]); i += 1
    info = {}
    for f in files:
        if not os.path.isfile(f):
            continue
        d = {"provide": [], "require": [], "before": [], "keyword": []}
        for line in (_read(f) or "").splitlines():
            m = re.match(r"#\s*(PROVIDE|REQUIRE|BEFORE|KEYWORD):(.*)", line)
            if m:
                d[m.group(1).lower()] += m.group(2).split()
        if skip & set(d["keyword"]) or (keep and not keep & set(d["keyword"])):
            continue
        info[f] = d
    providers = {}
    for f, d in info.items():
        for p in d["provide"] or [os.path.basename(f)]:
            providers.setdefault(p, []).append(f)
    deps = {f: set() for f in info}
    for f, d in info.items():
        for r in d["require"]:
            deps[f].update(providers.get(r, []))
        for b in d["before"]:
            for g in providers.get(b, []):
                deps[g].add(f)
    order, done, visiting = [], set(), set()

    def visit(f):
        if f in done or f in visiting:
            return
        visiting.add(f)
        for g in sorted(deps[f]):
            visit(g)
        visiting.discard(f)
        done.add(f)
        order.append(f)
    for f in files:
        if f in info:
            visit(f)
    for f in order:
        print(f)
    return 0


def main():
    name = sys.argv[1]
    argv = sys.argv[2:]
    if name in ("pfctl", "ipfw", "sysctl", "sockstat", "kldload", "kldunload", "kldstat", "netstat"):
        return kernel_cmd(name, argv)
    if name == "shutdown":
        if "-r" in argv:
            return reboot(argv)
        return 0
    return {"sysrc": sysrc, "service": service, "daemon": daemon, "reboot": reboot,
            "configctl": configctl, "rcorder": rcorder}[name](argv)


if __name__ == "__main__":
    sys.exit(main() or 0)
