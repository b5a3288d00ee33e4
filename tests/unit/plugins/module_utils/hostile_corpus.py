# -*- coding: utf-8 -*-
"""The hostile corpus (hostile/cases.json) as files: written out, made (FIFOs, links) or generated.

Shared by the command-line and the action plugin tests."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "hostile", "cases.json")

with open(CORPUS) as _handle:
    TABLE = json.load(_handle)
CASES = TABLE["cases"]


def _base(old, new):
    """The small spec most cases start from, with one change."""
    lines = [
        "version: 1", "consumers:", "  ids:", "    port: 9000", "    sockets: 3", "    service: suricata",
        "hosts:", "  fw1:", "    backend: pf", "    platform: freebsd", "    consumers: [ids]", "    rules:",
        "      - {name: web, consumer: ids, protocol: tcp, interface: em0, to_ports: [80]}",
    ]
    text = "\n".join(lines) + "\n"
    assert old in text
    return text.replace(old, new, 1)


def _aliased_string():
    refs = ", ".join(["*s"] * 20000)
    return ("version: 1\nx-s: &s \"%s\"\nconsumers:\n  ids:\n    port: 9000\n    service: suricata\n"
            "    description: *s\nhosts:\n  fw1:\n    backend: pf\n    platform: freebsd\n    consumers: [ids]\n"
            "    rules:\n      - {name: web, consumer: ids, protocol: tcp, to_ports: [%s]}\n" % ("x" * 20000, refs))


def _unknown_consumers():
    consumers = "".join("  d%d: {port: %d, service: s%d}\n" % (i, 1000 + i, i) for i in range(2000))
    names = "[" + ", ".join("c%d" % i for i in range(3000)) + "]"
    hosts = "".join("  h%d: {backend: pf, platform: freebsd, consumers: *n}\n" % i for i in range(30))
    return "version: 1\nconsumers:\n" + consumers + "x-n: &n " + names + "\nhosts:\n" + hosts


def _billion_laughs():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append("a%d: &a%d [%s]" % (level, level, ",".join(["*a%d" % (level - 1)] * 10)))
    return "\n".join(lines) + "\n"


def _merge_doubling():
    lines = ["b0: &b0 {k: 1}"]
    for level in range(1, 40):
        lines.append("b%d: &b%d {<<: [*b%d, *b%d]}" % (level, level, level - 1, level - 1))
    return "\n".join(lines) + "\n"


def _many_bad_values():
    bad = ", ".join(["0"] * 100000)
    return _base("to_ports: [80]", "to_ports: [%s]" % bad)


GENERATORS = {
    "big-int": lambda: _base("port: 9000", "port: 1" + "0" * 5000),
    "big-negative-int": lambda: _base("port: 9000", "port: -1" + "0" * 5000),
    "aliased-string": _aliased_string,
    "unknown-consumers": _unknown_consumers,
    "billion-laughs": _billion_laughs,
    "merge-doubling": _merge_doubling,
    "invisible-flood": lambda: "\u2028" * 1000000,
    "long-port-list": lambda: _base("to_ports: [80]", "to_ports: [%s]" % ", ".join(["80"] * 2100000)),
    "many-bad-values": _many_bad_values,
    "values-at-the-bound": lambda: _base("to_ports: [80]", "to_ports: [%s]" % ", ".join(["80"] * 199000)),
    "yaml-values-over-the-bound": lambda: _base("consumers:", "x-port: &port 9000\nconsumers:").replace(
        "to_ports: [80]", "to_ports: [%s]" % ", ".join(["80"] * 250000)),
}


def text_of(case):
    """The spec text of a written or generated case."""
    if "generate" in case:
        return GENERATORS[case["generate"]]()
    return "\n".join(case["lines"]) + "\n"


def make(case, directory):
    """The path of the case as a file under `directory` (a FIFO, a link or a device for the special ones)."""
    special = case.get("special")
    path = os.path.join(str(directory), case["name"] + ".yml")
    if special == "fifo":
        os.mkfifo(path)
    elif special == "symlink-to-fifo":
        os.mkfifo(path + ".fifo")
        os.symlink(path + ".fifo", path)
    elif special == "directory":
        os.mkdir(path)
    elif special:
        return special  # a device that every Linux and FreeBSD host has
    else:
        with open(path, "wb") as handle:
            handle.write(text_of(case).encode("utf-8"))
    return path


def position(case):
    return tuple(int(part) for part in case["at"].split(":")) if case.get("at") else None
