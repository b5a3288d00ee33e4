# -*- coding: utf-8 -*-
"""The reference consumer (roles/consumer/files/divert-reflector) with a fake socket module:
divert sockets cannot be bound off FreeBSD."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import importlib.machinery
import importlib.util
import json
import os
import socket as real_socket

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "roles", "consumer", "files", "divert-reflector"))


def _load():
    loader = importlib.machinery.SourceFileLoader("divert_reflector", PROGRAM)
    spec = importlib.util.spec_from_loader("divert_reflector", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


reflector = _load()


class FakeSocketModule:
    """Records socket calls in order; bind fails with `bind_errno` from the `fail_at`-th bind on."""
    SOCK_RAW = real_socket.SOCK_RAW
    AF_INET = real_socket.AF_INET
    SOL_SOCKET = real_socket.SOL_SOCKET

    def __init__(self, fail_at=None, bind_errno=None, create_errno=None):
        self.calls = []
        self.binds = 0
        self.fail_at = fail_at
        self.bind_errno = bind_errno
        self.create_errno = create_errno
        self.next_fd = 10

    def socket(self, family, kind, proto, fileno=None):
        if self.create_errno:
            raise OSError(self.create_errno, os.strerror(self.create_errno))
        module = self

        class Sock:
            def __init__(self):
                if fileno is None:
                    module.next_fd += 1
                self.fd = fileno if fileno is not None else module.next_fd
                module.calls.append(("socket", family, kind, proto, fileno))

            def detach(self):
                module.calls.append(("detach", self.fd))
                return self.fd

            def setsockopt(self, level, option, value):
                module.calls.append(("setsockopt", self.fd, level, option, value))

            def bind(self, address):
                module.binds += 1
                if module.fail_at is not None and module.binds >= module.fail_at:
                    raise OSError(module.bind_errno, os.strerror(module.bind_errno))
                module.calls.append(("bind", self.fd, address))

            def close(self):
                module.calls.append(("close", self.fd))

        return Sock()


def test_arguments():
    args = reflector.parse_args(["--port", "8000", "--sockets", "3", "--user", "nobody", "--stats", "/tmp/s.json"])
    assert (args.port, args.sockets, args.user, args.stats) == (8000, 3, "nobody", "/tmp/s.json")


@pytest.mark.parametrize("argv, message", [
    (["--port", "0"], "--port must be 1..65535"),
    (["--port", "8000", "--sockets", "33"], "at most 32"),
    (["--port", "8000", "--sockets", "0"], "--sockets must be 1..32"),
    (["--port", "8000", "--sockets", "2", "--no-lb"], "--no-lb allows --sockets 1 only"),
    (["--sockets", "2"], "--port"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        reflector.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_group_binds_with_lb_set_before_bind():
    sockmod = FakeSocketModule()
    group = reflector.open_group(8000, 3, sockmod=sockmod)
    assert len(group) == 3
    divert = [c for c in sockmod.calls if c[0] == "socket" and c[4] is None]
    assert [c[1:4] for c in divert] == [(44, real_socket.SOCK_RAW, 0)] * 3
    for sock in group:
        mine = [c for c in sockmod.calls if c[0] in ("setsockopt", "bind") and c[1] == sock.fd]
        assert mine == [("setsockopt", sock.fd, real_socket.SOL_SOCKET, 0x00010000, 1),
                        ("bind", sock.fd, ("0.0.0.0", 8000))]


def test_no_lb_single_socket_sets_no_option():
    sockmod = FakeSocketModule()
    reflector.open_group(8000, 1, lb=False, sockmod=sockmod)
    assert not [c for c in sockmod.calls if c[0] == "setsockopt"]


@pytest.mark.parametrize("code, text", [(errno.EADDRINUSE, "address in use"), (errno.ENOSPC, "already holds 32")])
def test_bind_failure_is_clear_and_closes_the_group(code, text):
    sockmod = FakeSocketModule(fail_at=2, bind_errno=code)
    with pytest.raises(reflector.ReflectorError) as info:
        reflector.open_group(8000, 3, sockmod=sockmod)
    assert "socket 2/3 to divert port 8000" in str(info.value) and text in str(info.value)
    assert [c for c in sockmod.calls if c[0] == "close"]


def test_main_exits_non_zero_with_message(capsys):
    sockmod = FakeSocketModule(fail_at=1, bind_errno=errno.EADDRINUSE)
    assert reflector.main(["--port", "8000"], sockmod=sockmod) == 1
    assert "error: bind of socket 1/1 to divert port 8000 failed: address in use" in capsys.readouterr().err


def test_create_without_privilege():
    with pytest.raises(reflector.ReflectorError, match="need root"):
        reflector.open_group(8000, 1, sockmod=FakeSocketModule(create_errno=errno.EPERM))


def test_relay_reinjects_unchanged_and_counts(tmp_path):
    class Sock:
        sent = []

        def recvfrom(self, size):
            return b"\x45packet", ("192.0.2.1", 10000)

        def sendto(self, data, address):
            self.sent.append((data, address))

    stats = reflector.Stats(8000, 2, str(tmp_path / "stats.json"))
    sock = Sock()
    reflector.relay(sock, 1, stats)
    reflector.relay(sock, 1, stats)
    assert sock.sent == [(b"\x45packet", ("192.0.2.1", 10000))] * 2
    stats.write()
    document = json.loads((tmp_path / "stats.json").read_text())
    assert document["packets"] == [0, 2] and document["total"] == 2 and document["port"] == 8000


def test_drop_privileges_only_as_root():
    assert reflector.drop_privileges("nobody", getuid=lambda: 1000) is False
    assert reflector.drop_privileges(None, getuid=lambda: 0) is False
