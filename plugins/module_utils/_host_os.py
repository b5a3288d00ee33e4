# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The managed host as the on-host code sees it: commands, files, rc.conf, errors.

Private to the divert.fleet collection. Part of the on-host library (the `_host_*` files),
which imports nothing but the Python standard library (3.8+) and the collection's own
standard-library-only parts, because the same files are also installed on every host as the
boot-time gate program (invariant I3, `_host_gate`).

Commands are run by their plain names from PATH (pfctl, ipfw, sockstat, sysctl, kldload,
kldstat, sysrc, service, configctl); files are FreeBSD absolute paths, optionally below a
`root` prefix (the unit tests use a temporary directory as root). Every FreeBSD behaviour
relied on is a fact of freebsd-facts.md, named next to the code as "fact: ...".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import errno
import fcntl
import json
import os
import shlex
import socket
import subprocess
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
DEFAULT_ANCHOR = "divert_fleet"
DEFAULT_GATE_TIMEOUT = 300
# One divert.fleet change at a time per host. /var/run is emptied at boot.
LOCK_FILE = "/var/run/divert_fleet.lock"
DEFAULT_LOCK_TIMEOUT = 900


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


class LockTimeout(HostError):
    """Another divert.fleet change held the host for longer than the wait allowed."""


class Detached(BaseException):
    """Raised in the module's process once a child took the change over (see `Progress`): the
    module answers at once and the action plugin follows the job file. A BaseException, so no
    error handler on the way out mistakes it for a failure and undoes the change."""

    def __init__(self, job):
        super(Detached, self).__init__(job)
        self.job = job


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
        # rc.conf values that `sysrc -e` printed since the last sysrc that writes: name -> value,
        # None for unset. One run reads each variable once; any write forgets them all.
        self.rc_read = {}

    def run(self, argv, data=None):
        argv = [str(a) for a in argv]
        self.commands.append(" ".join(argv))
        if argv[0] == "sysrc" and argv[1:2] != ["-e"]:
            self.rc_read.clear()
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

    def read_file(self, abs_path, binary=False):
        """The file's text (bytes with `binary`), or None if it cannot be read."""
        try:
            with open(self.path(abs_path), "rb" if binary else "r") as handle:
                return handle.read()
        except (IOError, OSError, UnicodeDecodeError):
            return None

    def write_file(self, abs_path, content, mode=0o644):
        """Atomically replace a file (temporary file in the same directory, then rename).

        `content` is text, or bytes for a binary file such as the gate program."""
        target = self.path(abs_path)
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".divert_fleet.", dir=directory)
        try:
            with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as handle:
                handle.write(content)
            os.chmod(tmp, mode)
            os.rename(tmp, target)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def ensure_file(self, abs_path, content, mode=0o644, check_mode=False):
        """Write the file if its content or mode differ; True if it changed (or would)."""
        current = self.read_file(abs_path, binary=isinstance(content, bytes))
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


# --- rc.conf ---------------------------------------------------------------------

def sysrc_values(host, names):
    """Current rc.conf values: `sysrc -e NAME...` prints `NAME="value"` per set variable
    (unset ones go to stderr and are absent here). Names the host has read since its last
    rc.conf write are not read again."""
    known = host.rc_read
    missing = sorted(set(name for name in names if name not in known))
    if missing:
        _rc, out, _err = host.run(["sysrc", "-e"] + missing)
        read = {}
        for line in out.splitlines():
            name, sep, raw = line.partition("=")
            if not sep or name not in missing:
                continue
            try:
                parts = shlex.split(raw)
            except ValueError:
                parts = [raw]
            read[name] = " ".join(parts)
        for name in missing:
            known[name] = read.get(name)
    return dict((name, known[name]) for name in names if known.get(name) is not None)


def ensure_rc_var(host, name, value, check_mode):
    current = sysrc_values(host, [name]).get(name)
    if current == value:
        return False
    if not check_mode:
        host.run_ok(["sysrc", "%s=%s" % (name, value)], "setting %s in rc.conf" % name)
    return True


# --- results ---------------------------------------------------------------------

def text_diff(before, after, before_header, after_header):
    return {"before": before, "after": after, "before_header": before_header, "after_header": after_header}


def unified(before_lines, after_lines):
    return "\n".join(difflib.unified_diff(before_lines, after_lines, "loaded", "wanted", lineterm=""))


# --- one change at a time ----------------------------------------------------------

class HostLock:
    """The host-wide lock of one divert.fleet change (a module run, or the boot gate's load).

    flock(2) on LOCK_FILE: the kernel releases it when the holder's process ends, however it
    ends, so a run that died leaves no stale lock behind, and the descriptor is not inherited
    by the services a change starts (Python opens files non-inheritable). The file names the
    holder (pid, what, since) for the message of a run that gives up waiting.
    """

    def __init__(self, host, what, timeout=DEFAULT_LOCK_TIMEOUT, interval=0.2):
        self.host, self.what, self.timeout, self.interval = host, what, timeout, interval
        self.fd = None
        self.waited = 0.0

    def __enter__(self):
        path = self.host.path(LOCK_FILE)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        start = self.host.clock()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise
            self.waited = self.host.clock() - start
            if self.waited >= self.timeout:
                holder = self._holder(fd)
                os.close(fd)
                raise LockTimeout(
                    "another divert.fleet change holds %s on %s (%s); gave up after %d s without changing "
                    "anything - let it finish, or raise the lock timeout" % (
                        LOCK_FILE, self.host.name, holder, int(self.waited)), lock=LOCK_FILE, holder=holder)
            self.host.sleep(self.interval)
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps({"pid": os.getpid(), "what": self.what, "since": int(time.time())}) + "\n")
                 .encode("utf-8"))
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            record = json.loads(os.read(fd, 4096).decode("utf-8"))
            since = time.strftime("%H:%M:%S", time.localtime(record.get("since", 0)))
            return "%s, pid %s, since %s" % (record.get("what"), record.get("pid"), since)
        except (OSError, ValueError, TypeError, AttributeError):
            return "holder unknown"

    def __exit__(self, exc_type, *exc_info):
        if exc_type is Detached and self.fd is not None:
            # The child that goes on holds the same open file: closing ours keeps the lock, and
            # it is the child's to release.
            os.close(self.fd)
            self.fd = None
            return False
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
        return False


# --- long waits, seen from the controller -------------------------------------------------------

class Progress:
    """What a module tells the operator while it waits (a gate, a drain).

    Without a job file, messages only go to the result. With one (the action plugin's), the
    first message forks: the child takes the change over, appends each message and finally the
    module's result to the job file, one JSON object per line, while the parent raises Detached
    so the module returns at once; the action plugin reads the file every few seconds and shows
    the messages. A change that never waits (every run that changes nothing) never forks.
    """

    def __init__(self, job=None):
        self.job = job
        self.messages = []
        self.child = False

    def __call__(self, message):
        self.messages.append(message)
        if not self.job:
            return
        if not self.child:
            self._detach()
        self.write({"progress": message, "time": int(time.time())})

    def _detach(self):
        fd = os.open(self.job, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        pid = os.fork()
        if pid:
            raise Detached(self.job)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(null, stream)
        self.child = True

    def write(self, record):
        with open(self.job, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def finish(self, result):
        """In the child: the module's result, last line of the job file; then the child ends."""
        self.write({"result": result})
        os._exit(0)
