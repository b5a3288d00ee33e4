"""Client side of a twin divert socket (what socket(PF_DIVERT, SOCK_RAW, 0) returns on a twin
host).  The connection to the host kernel *is* the socket: when the process dies the
connection drops and the kernel closes the socket."""
import errno
import json
import os
import socket
import struct
import time

from twinlib import proto

SOL_SOCKET_FREEBSD = 0xffff
SO_REUSEPORT_LB = 0x00010000


def _oserror(e):
    return OSError(e, os.strerror(e))


DETACHED = {}  # descriptor -> DivertSocket, for socket(..., fileno=fd) re-wrapping


class DivertSocket:
    def __init__(self, family, type_, proto_):
        if type_ not in (socket.SOCK_RAW, int(socket.SOCK_RAW)):
            raise _oserror(errno.EPROTOTYPE)
        self.family, self.type, self.proto = family, type_, proto_
        self._lb = False
        self._bound = None
        self._closed = False
        self._c = proto.connect()
        self.service = os.environ.get("TWIN_SERVICE")
        try:
            comm = open("/proc/self/comm").read().strip()
        except OSError:
            comm = "python3"
        req = {"op": "socket", "pid": os.getpid(), "fd": self._c.fileno(), "comm": comm,
               "euid": os.geteuid(), "service": self.service, "ino": os.fstat(self._c.fileno()).st_ino}
        self._c.sendall(b"J" + json.dumps(req).encode())
        rep = json.loads(self._c.recv(65536)[1:])
        if rep.get("errno"):
            self._c.close()
            raise _oserror(rep["errno"])
        self._faults = {}
        if self.service:
            try:
                self._faults = proto.call({"op": "fault_get", "service": self.service})
            except OSError:
                self._faults = {}
        die = self._faults.get("die_after")
        if die is not None:
            import signal
            import threading
            t = threading.Timer(float(die), lambda: os.kill(os.getpid(), signal.SIGKILL))
            t.daemon = True
            t.start()

    # --- options
    def setsockopt(self, level, opt, value, *rest):
        if level in (socket.SOL_SOCKET, SOL_SOCKET_FREEBSD) and opt == SO_REUSEPORT_LB:
            v = value if isinstance(value, int) else struct.unpack("i", value[:4])[0]
            if self._bound is None:
                self._lb = bool(v)   # only counts before bind(): the group is formed at bind
            return None
        return None

    def getsockopt(self, level, opt, buflen=None):
        if level in (socket.SOL_SOCKET, SOL_SOCKET_FREEBSD) and opt == SO_REUSEPORT_LB:
            return SO_REUSEPORT_LB if self._lb else 0
        return 0

    # --- bind
    def bind(self, addr):
        if self._closed:
            raise _oserror(errno.EBADF)
        port = int(addr[1])
        delay = self._faults.get("bind_delay")
        if delay:
            time.sleep(float(delay))   # fault knob: a consumer that binds slowly
        self._c.sendall(b"J" + json.dumps({"op": "bind", "port": port, "lb": self._lb}).encode())
        rep = json.loads(self._c.recv(65536)[1:])
        if rep.get("errno"):
            raise _oserror(rep["errno"])
        self._bound = port

    def getsockname(self):
        return ("0.0.0.0", self._bound or 0)

    # --- data
    def recvfrom(self, bufsize, flags=0):
        while True:
            data = self._c.recv(proto.MAXMSG)
            if not data:
                raise _oserror(errno.ECONNRESET)
            if data[:1] == b"P":
                port = struct.unpack("!H", data[1:3])[0]
                addr = socket.inet_ntoa(data[3:7])
                # the packet left the receive buffer: tell the kernel its space is free
                self._c.sendall(b"R" + struct.pack("!I", len(data) - 7))
                return data[7:7 + bufsize], (addr, port)

    def recv(self, bufsize, flags=0):
        return self.recvfrom(bufsize, flags)[0]

    def recvfrom_into(self, buf, nbytes=0, flags=0):
        data, addr = self.recvfrom(nbytes or len(buf))
        buf[:len(data)] = data
        return len(data), addr

    def sendto(self, data, *args):
        addr = args[-1]
        port = int(addr[1]) if addr else 0
        ip = socket.inet_aton(addr[0] if addr and addr[0] else "0.0.0.0")
        self._c.sendall(b"S" + struct.pack("!H", port) + ip + bytes(data))
        return len(data)

    def send(self, data, flags=0):
        return self.sendto(data, ("0.0.0.0", 0))

    # --- plumbing
    def fileno(self):
        return self._c.fileno()

    def settimeout(self, t):
        self._c.settimeout(t)

    def gettimeout(self):
        return self._c.gettimeout()

    def setblocking(self, flag):
        self._c.setblocking(flag)

    def close(self):
        if not self._closed:
            self._closed = True
            self._c.close()

    def detach(self):
        # A program may wrap a divert socket's descriptor in a socket object of another family
        # (e.g. AF_INET, so that Python parses the sockaddr_in that divert uses): the descriptor
        # is still this divert socket. The shim hands this object back for it.
        fd = self._c.fileno()
        DETACHED[fd] = self
        return fd

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __repr__(self):
        return "<twin divert socket port=%s lb=%s>" % (self._bound, self._lb)
