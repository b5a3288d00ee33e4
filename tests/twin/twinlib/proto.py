"""Wire protocol between twin processes and a host's kernel daemon.

Each host kernel listens on an abstract Unix SOCK_SEQPACKET socket (see address()).
Control requests: one JSON message, one JSON reply.  A divert socket is a connection that
stays open; the kernel notices the process's death when the connection drops, as the real
kernel closes a socket when its last descriptor goes away.
Message kinds on divert connections (first byte):
  J  JSON request/reply     P  packet to the consumer: 2-byte port (rule nr) + 4-byte addr + IP packet
  S  packet from the consumer (sendto): 2-byte port + 4-byte addr + IP packet
  R  the consumer read one packet (recvfrom): 4-byte length of the packet read; the kernel
     frees that much of the socket's receive buffer
"""
import hashlib
import json
import os
import socket

MAXMSG = 65536 + 64


def address(hostdir):
    h = hashlib.sha1(os.path.realpath(hostdir).encode()).hexdigest()[:20]
    return "\0freebsd-twin-" + h


def host_dir():
    """The host directory of the twin host this process runs on."""
    d = os.environ.get("TWIN_HOST_DIR")
    if d:
        return d
    try:
        with open("/etc/twin-host") as f:
            return f.read().strip()
    except OSError:
        raise SystemExit("twin: not running on a twin host (no /etc/twin-host)")


def connect(hostdir=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(address(hostdir or host_dir()))
    return s


def call(req, hostdir=None, timeout=None):
    s = connect(hostdir)
    try:
        if timeout:
            s.settimeout(timeout)
        s.sendall(b"J" + json.dumps(req).encode())
        data = s.recv(16 * 1024 * 1024)
        if not data:
            raise ConnectionError("twin kernel closed the connection")
        return json.loads(data[1:])
    finally:
        s.close()


def run_cmd(cmd, argv, files=None, stdin=None, hostdir=None):
    """Run a kernel-side command stand-in; returns (rc, stdout, stderr)."""
    r = call({"op": "cmd", "cmd": cmd, "argv": argv, "files": files or {}, "stdin": stdin,
              "pid": os.getpid(), "ppid": os.getppid()}, hostdir)
    return r.get("rc", 1), r.get("stdout", ""), r.get("stderr", "")
