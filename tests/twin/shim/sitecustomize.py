"""Twin shim, loaded by every Python process of a twin host (PYTHONPATH set by the host's
/usr/local/bin/python3).  It makes the process see FreeBSD:
  * socket.socket(44, SOCK_RAW, 0) (PF_DIVERT) and socket(AF_INET, SOCK_RAW, 258)
    (IPPROTO_DIVERT) become twin divert sockets backed by the host's kernel daemon;
  * os.uname() reports FreeBSD (so platform.system() == "FreeBSD");
  * sys.executable is the host's /usr/local/bin/python3.
Nothing else changes."""
import os as _os
import sys as _sys

_TWIN = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


def _install():
    import collections
    real_uname = _os.uname
    U = collections.namedtuple("uname_result", "sysname nodename release version machine")

    def uname():
        u = real_uname()
        return _os.uname_result(("FreeBSD", _hostname() or u.nodename, "15.0-RELEASE",
                                 "FreeBSD 15.0-RELEASE GENERIC", "amd64"))
    _os.uname = uname

    import socket as _socket
    _socket.AF_DIVERT = _socket.PF_DIVERT = 44
    _socket.IPPROTO_DIVERT = 258
    _socket.SO_REUSEPORT_LB = 0x00010000
    real = _socket.socket

    class socket(real):
        def __new__(cls, family=-1, type=-1, proto=-1, fileno=None):
            detached = getattr(_sys.modules.get("twinlib.divert"), "DETACHED", {})
            if fileno is not None and fileno in detached:
                return detached.pop(fileno)
            if fileno is None and (family == 44 or (family == _socket.AF_INET and proto == 258)):
                if _TWIN not in _sys.path:
                    _sys.path.append(_TWIN)
                from twinlib.divert import DivertSocket
                return DivertSocket(family, type, proto)
            return real.__new__(cls, family, type, proto, fileno)
    socket.__name__ = "socket"
    socket.__qualname__ = "socket"
    _socket.socket = socket


def _hostname():
    try:
        with open("/etc/rc.conf") as f:
            for line in f:
                if line.startswith("hostname="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


# Inside a twin host this interpreter is the host's /usr/local/bin/python3 (a wrapper that
# adds this shim); report that path, as FreeBSD's Python would, so that programs which
# re-run "the interpreter Ansible used" (sys.executable) get the shim too.
_sys.executable = "/usr/local/bin/python3"

try:
    _install()
except Exception as _e:   # never break the interpreter
    _sys.stderr.write("twin shim: %s\n" % _e)
