"""Creating, starting, stopping and resetting twin hosts (used by twinctl)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

TWIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TWIN)
from twinlib import opnsense, proto  # noqa: E402

SBIN_TOOLS = ["pfctl", "ipfw", "sysctl", "kldload", "kldunload", "kldstat", "sysrc", "service",
              "daemon", "reboot", "shutdown", "rcorder"]
BIN_TOOLS = ["sockstat", "netstat"]


def real_python():
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable) or sys.executable)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def standins(root):
    """Per-root directory of command stand-ins (overlaid on /usr/sbin and /usr/bin)."""
    d = os.path.join(root, ".standins")
    py = real_python()
    for sub, names in (("sbin", SBIN_TOOLS), ("bin", BIN_TOOLS)):
        for n in names:
            _write(os.path.join(d, sub, n), tool_script(py, n), 0o755)
    return d


def tool_script(py, name):
    """A command stand-in: twinlib.tools imported (its bytecode cached), not run as a script."""
    return "#!/bin/sh\nexec %s -I -S -c 'import sys; sys.path.insert(0, \"%s\"); from twinlib.tools import main; " \
           "sys.exit(main() or 0)' %s \"$@\"\n" % (py, TWIN, name)


def hosts(root):
    out = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for n in names:
        meta = os.path.join(root, n, "host.json")
        if os.path.isfile(meta):
            with open(meta) as f:
                out.append(json.load(f))
    return out


def create_fs(root, name, flavour):
    hd = os.path.join(root, name)
    fs = os.path.join(hd, "fs")
    etc, local = os.path.join(fs, "etc.up"), os.path.join(fs, "local.up")
    for d in ("etc.up", "etc.work", "local.up", "local.work", "run.up", "run.work", "boot"):
        os.makedirs(os.path.join(fs, d), exist_ok=True)
    files = os.path.join(TWIN, "files")
    for src_root, dst_root in ((os.path.join(files, "etc"), etc), (os.path.join(files, "local"), local)):
        for dp, dn, fn in os.walk(src_root):
            for f in fn:
                s = os.path.join(dp, f)
                t = os.path.join(dst_root, os.path.relpath(s, src_root))
                os.makedirs(os.path.dirname(t), exist_ok=True)
                shutil.copy2(s, t)
    _write(os.path.join(etc, "twin-host"), hd + "\n")
    _write(os.path.join(etc, "twin-flavour"), flavour + "\n")
    _write(os.path.join(etc, "rc.conf"), 'hostname="%s"\n' % name)
    os.makedirs(os.path.join(etc, "rc.conf.d"), exist_ok=True)
    loader = ""
    if flavour == "opnsense":
        loader = 'pf_load="YES"\n'
    _write(os.path.join(fs, "boot", "loader.conf"), loader)
    py = real_python()
    _write(os.path.join(local, "bin", "python3"),
           '#!/bin/sh\n# twin: python with the divert-socket shim\n'
           'PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}\nexport PYTHONPATH\nexec %s "$@"\n'
           % (os.path.join(TWIN, "shim"), py), 0o755)
    os.makedirs(os.path.join(local, "etc", "rc.conf.d"), exist_ok=True)
    # Suricata from packages: its configuration (FreeBSD: the port's sample copied into place;
    # OPNsense: rewritten by the template OPNsense/IDS) and its log directory
    _write(os.path.join(local, "etc", "suricata", "suricata.yaml"),
           "%YAML 1.1\n---\n# the twin's Suricata reads no setting from this file; it must exist\n")
    os.makedirs(os.path.join(fs, "conf"), exist_ok=True)   # /conf: OPNsense's configuration
    if flavour == "opnsense":
        os.makedirs(os.path.join(local, "etc", "inc", "plugins.inc.d"), exist_ok=True)
        os.makedirs(os.path.join(local, "etc", "rc.syshook.d", "early"), exist_ok=True)
        _write(os.path.join(local, "sbin", "configctl"), tool_script(py, "configctl"), 0o755)
        _write(os.path.join(fs, "conf", "config.xml"), opnsense.DEFAULT_CONFIG % {"hostname": name}, 0o640)
        os.makedirs(os.path.join(fs, "conf", "backup"), exist_ok=True)
        # rc.syshook.d/early/15-templates: every configd template regenerated at boot, before the
        # filter and the services (opnsense/core src/etc/rc.syshook.d/early/15-templates)
        _write(os.path.join(local, "etc", "rc.syshook.d", "early", "15-templates"),
               "#!/bin/sh\n# twin: OPNsense regenerates every template here (template_ctl.py '*')\n"
               "echo -n \"Generating configuration: \"\n/usr/local/sbin/configctl template reload '*'\n", 0o755)
        # the script OPNsense's template names as suricata_setup (scripts/suricata/setup.sh)
        _write(os.path.join(local, "opnsense", "scripts", "suricata", "setup.sh"),
               "#!/bin/sh\n# twin: OPNsense's scripts/suricata/setup.sh\n"
               "for d in /var/log/suricata /usr/local/etc/suricata/conf.d; do\n"
               "\tmkdir -p $d && chmod -R 0700 $d\ndone\n"
               "touch /usr/local/etc/suricata/installed_rules.yaml\n"
               "# always load ipdivert so inline mode is available\nkldload -q ipdivert || true\n", 0o755)
    os.makedirs(os.path.join(hd, "bin"), exist_ok=True)
    _write(os.path.join(hd, "bin", "python"),
           '#!/bin/sh\n# twin host %s: run Python inside the host (its mount namespace)\n'
           'pid=$(cat %s 2>/dev/null)\n'
           '[ -n "$pid" ] || { echo "twin host %s is down" >&2; exit 1; }\n'
           'exec nsenter -t "$pid" -m -u -- /usr/bin/env PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin '
           '/usr/local/bin/python3 "$@"\n' % (name, os.path.join(hd, "kernel.pid"), name), 0o755)
    _write(os.path.join(hd, "host.json"), json.dumps({"name": name, "flavour": flavour, "dir": hd}))


def is_up(hd):
    try:
        r = proto.call({"op": "ping"}, hd, timeout=5)
        return r.get("ok")
    except OSError:
        return False


def start(root, name, flavour):
    hd = os.path.join(root, name)
    if is_up(hd):
        return False
    if not os.path.isfile(os.path.join(hd, "host.json")):
        create_fs(root, name, flavour)
    st = standins(root)
    r, w = os.pipe()
    log = open(os.path.join(hd, "kernel.log"), "ab")
    p = subprocess.Popen(["unshare", "-m", "-u", "--propagation", "private", real_python(), "-I", "-S",
                          os.path.join(TWIN, "twinlib", "server.py"), hd, name, flavour, st, str(w)],
                         pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, cwd="/")
    os.close(w)
    with os.fdopen(r) as f:
        ready = f.read()      # the kernel writes "ready" once booted (or closes on failure)
    if "ready" not in ready:
        raise RuntimeError("twin host %s failed to start; see %s" % (name, os.path.join(hd, "kernel.log")))
    return True


def stop(root, name):
    hd = os.path.join(root, name)
    try:
        proto.call({"op": "shutdown"}, hd, timeout=30)
    except OSError:
        pass
    pidf = os.path.join(hd, "kernel.pid")
    try:
        pid = int(open(pidf).read())
        try:
            fd = os.pidfd_open(pid)
            import select
            select.select([fd], [], [], 10)
            os.close(fd)
        except OSError:
            pass
        os.unlink(pidf)
    except (OSError, ValueError):
        pass


def reset(root, name, flavour):
    stop(root, name)
    hd = os.path.join(root, name)
    shutil.rmtree(os.path.join(hd, "fs"), ignore_errors=True)
    for f in ("console.log", "kernel.log", "host.json"):
        try:
            os.unlink(os.path.join(hd, f))
        except OSError:
            pass
    create_fs(root, name, flavour)
    start(root, name, flavour)
