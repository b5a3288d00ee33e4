#!/usr/local/bin/python3
"""Tiny test consumer: binds N divert sockets on PORT (SO_REUSEPORT_LB unless LB is 0).
Usage: twinconsumer PORT N [LB [MODE]]; MODE:
  reflect   reinject every packet (default)
  swallow   read every packet, reinject none
  stall     bind, then never read (the receive buffers fill up)
  workers   one process per socket, each binds one socket and reflects (pids in
            /var/run/twinconsumer.workers, in slot order)
  fork      bind every socket, then fork: parent and child both hold them; the child reflects"""
import os
import select
import signal
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
lb = len(sys.argv) < 4 or sys.argv[3] != "0"
mode = sys.argv[4] if len(sys.argv) > 4 else "reflect"


def bind_one(i):
    s = socket.socket(44, socket.SOCK_RAW, 0)
    if lb:
        s.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
    try:
        s.bind(("0.0.0.0", port))
    except OSError as e:
        print("bind %d: %s" % (i, e), flush=True)
        s.close()
        return None
    return s


children = []


def on_term(_sig, _frame):
    # `service twinconsumer stop` signals the pid file's process: take the children along
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


def serve(socks, reinject=True):
    while socks:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            data, addr = s.recvfrom(65535)
            if reinject:
                s.sendto(data, addr)


if mode == "workers":
    signal.signal(signal.SIGTERM, on_term)
    pids = children
    for i in range(n):
        rd, wr = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(rd)
            s = bind_one(i)
            os.write(wr, b"1" if s else b"0")
            os.close(wr)
            serve([s] if s else [])
            os._exit(0)
        os.close(wr)
        os.read(rd, 1)          # bind in order: worker i holds slot i
        os.close(rd)
        pids.append(pid)
    with open("/var/run/twinconsumer.workers", "w") as f:
        f.write("\n".join(map(str, pids)) + "\n")
    print("bound %d workers" % n, flush=True)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(3600)
socks = [s for s in (bind_one(i) for i in range(n)) if s]
print("bound %d" % len(socks), flush=True)
if mode == "stall":
    while True:
        time.sleep(3600)
if mode == "fork":
    signal.signal(signal.SIGTERM, on_term)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        serve(socks)
        os._exit(0)
    children.append(child)
    with open("/var/run/twinconsumer.child", "w") as f:
        f.write("%d\n" % child)
    while True:
        time.sleep(3600)
serve(socks, reinject=(mode != "swallow"))
