#!/usr/local/bin/python3
"""Tiny test consumer: binds N divert sockets on PORT (SO_REUSEPORT_LB unless lb=0),
reinjects every packet.  Usage: twinconsumer.py PORT N [LB]"""
import select
import socket
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
lb = len(sys.argv) < 4 or sys.argv[3] != "0"
socks = []
for i in range(n):
    s = socket.socket(44, socket.SOCK_RAW, 0)
    if lb:
        s.setsockopt(socket.SOL_SOCKET, 0x00010000, 1)
    try:
        s.bind(("0.0.0.0", port))
    except OSError as e:
        print("bind %d: %s" % (i, e), flush=True)
        continue
    socks.append(s)
print("bound %d" % len(socks), flush=True)
while socks:
    r, _, _ = select.select(socks, [], [])
    for s in r:
        data, addr = s.recvfrom(65535)
        s.sendto(data, addr)
