# -*- coding: utf-8 -*-
"""Rendered rules: golden files for the examples and a table of rule shapes, determinism, safety.

Regenerate the golden files after a deliberate change with
`DIVERT_FLEET_UPDATE_GOLDEN=1 pytest tests/unit/plugins/module_utils/test_render.py`
and review the diff.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _render
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file, validate_text
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import (
    EXAMPLES, GOLDEN, base, dump, subprocess_env)

UPDATE = os.environ.get("DIVERT_FLEET_UPDATE_GOLDEN") == "1"

# Each shape: every rule field alone, then in combination. (name, fields, backends)
SHAPES = [
    ("minimal", {}, ("pf", "ipfw")),
    ("interface", {"interface": "igb0"}, ("pf", "ipfw")),
    ("direction-out", {"direction": "out", "interface": "igb0"}, ("pf", "ipfw")),
    ("direction-any", {"direction": "any", "interface": "igb0"}, ("pf", "ipfw")),
    ("proto-tcp", {"protocol": "tcp"}, ("pf", "ipfw")),
    ("proto-udp", {"protocol": "udp"}, ("pf", "ipfw")),
    ("proto-icmp", {"protocol": "icmp"}, ("pf", "ipfw")),
    ("proto-list", {"protocol": ["tcp", "udp"]}, ("pf", "ipfw")),
    ("from-one", {"from": "192.0.2.1"}, ("pf", "ipfw")),
    ("from-cidr", {"from": "10.0.0.0/8"}, ("pf", "ipfw")),
    ("from-list", {"from": ["10.0.0.0/8", "192.168.0.0/16"]}, ("pf", "ipfw")),
    ("to-list", {"to": ["198.51.100.0/24", "203.0.113.7"]}, ("pf", "ipfw")),
    ("to-port", {"protocol": "tcp", "to_ports": [443]}, ("pf", "ipfw")),
    ("to-ports", {"protocol": "tcp", "to_ports": [80, 443]}, ("pf", "ipfw")),
    ("to-range", {"protocol": "udp", "to_ports": ["1024:2048"]}, ("pf", "ipfw")),
    ("to-mixed", {"protocol": "tcp", "to_ports": [22, "8000:8080", 9443]}, ("pf", "ipfw")),
    ("from-ports", {"protocol": "udp", "from_ports": [53, "5353:5354"]}, ("pf", "ipfw")),
    ("no-state", {"state": "none", "protocol": "udp", "port": 9100, "consumer": None}, ("pf", "ipfw")),
    ("by-port", {"port": 9000, "consumer": None, "protocol": "tcp"}, ("pf", "ipfw")),
    ("inet6-any", {"family": "inet6", "interface": "vtnet0"}, ("ipfw",)),
    ("inet6-tcp", {"family": "inet6", "protocol": "tcp"}, ("ipfw",)),
    ("inet6-icmp", {"family": "inet6", "protocol": "icmp", "from": "2001:db8::/32"}, ("ipfw",)),
    ("inet6-list", {"family": "inet6", "protocol": ["tcp", "udp"], "to": ["2001:db8:1::/48", "2001:db8:2::1"],
                    "to_ports": [53]}, ("ipfw",)),
    ("everything", {"interface": "igb1", "direction": "out", "protocol": ["tcp", "udp"],
                    "from": ["10.0.0.0/8", "172.16.0.0/12"], "to": "198.51.100.0/24",
                    "from_ports": ["1024:65535"], "to_ports": [53, 443, "8000:8010"]}, ("pf", "ipfw")),
]


def _shape_spec(fields, backend):
    rule = {"name": "shape", "consumer": "ids"}
    rule.update(fields)
    rule = {k: v for k, v in rule.items() if v is not None}
    host = {"backend": backend, "platform": "freebsd", "consumers": ["ids", "solo"], "rules": [rule]}
    return {
        "version": 1,
        "consumers": {"ids": {"port": 9000, "sockets": 5 if backend == "pf" else 1, "service": "ids"},
                      "solo": {"port": 9100, "service": "solo"}},
        "hosts": {"fw-%s" % backend: host},
    }


def _check_golden(name, text):
    path = os.path.join(GOLDEN, name)
    if UPDATE:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            handle.write(text)
    with open(path) as handle:
        assert text == handle.read(), "rendered text differs from golden file %s" % path


SHAPE_CASES = [(name, fields, backend) for name, fields, backends in SHAPES for backend in backends]


@pytest.mark.parametrize("name, fields, backend", SHAPE_CASES, ids=["%s-%s" % (c[0], c[2]) for c in SHAPE_CASES])
def test_rule_shape_golden(name, fields, backend):
    report = validate_text(dump(_shape_spec(fields, backend)), file="shape.yml")
    assert report.errors == [], [d.message for d in report.errors]
    host = report.fleet.hosts["fw-%s" % backend]
    lines = [line for line in _render.render(host).splitlines() if not line.startswith("#")]
    _check_golden(os.path.join("shapes", "%s.%s" % (name, backend)), "\n".join(lines) + "\n")


EXAMPLE_HOSTS = sorted(validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet.hosts)


@pytest.mark.parametrize("host_name", EXAMPLE_HOSTS)
def test_example_host_golden(host_name):
    host = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet.hosts[host_name]
    _check_golden(os.path.join("examples", _render.file_name(host)), _render.render(host))


def test_design_example_line():
    spec = _shape_spec({"interface": "igb0", "protocol": "tcp", "to": ["10.0.0.0/8", "192.168.0.0/16"],
                        "to_ports": [80, 443]}, "pf")
    spec["hosts"]["fw-pf"]["rules"][0]["name"] = "inspect-web"
    spec["consumers"]["ids"]["port"] = 8000
    host = validate_text(dump(spec), file="s.yml").fleet.hosts["fw-pf"]
    assert _render.render(host).splitlines()[-1] == (
        'pass in quick on igb0 inet proto tcp from any to { 10.0.0.0/8, 192.168.0.0/16 } port { 80, 443 } '
        'keep state label "divert_fleet:inspect-web" divert-to 8000')


def test_ipfw_numbering_follows_base_and_step_across_protocols():
    spec = _shape_spec({"protocol": ["tcp", "udp"]}, "ipfw")
    spec["hosts"]["fw-ipfw"]["rules"].append({"name": "second", "consumer": "solo", "protocol": "icmp"})
    spec["hosts"]["fw-ipfw"]["ipfw"] = {"set": 3, "spare_set": 4, "rule_base": 500, "rule_step": 5}
    host = validate_text(dump(spec), file="s.yml").fleet.hosts["fw-ipfw"]
    numbers = [(n, t.split()[3]) for n, t in _render.ipfw_lines(host)]
    assert numbers == [(500, "3"), (505, "3"), (510, "3")]
    assert [t.split()[3] for _n, t in _render.ipfw_lines(host, rule_set=4)] == ["4", "4", "4"]


def test_header_names_host_backend_and_digest():
    host = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet.hosts["fw-edge-01"]
    header = _render.render(host).splitlines()[:2]
    assert "fw-edge-01" in header[0] and "backend pf" in header[0]
    assert header[1] == "# spec digest sha256:%s" % host.digest()


def test_digest_changes_only_with_the_host_slice():
    spec = _shape_spec({}, "pf")
    spec["hosts"]["other"] = {"backend": "pf", "platform": "freebsd", "consumers": ["solo"],
                              "rules": [{"name": "x", "consumer": "solo", "protocol": "tcp"}]}
    before = validate_text(dump(spec), file="s.yml").fleet.hosts
    spec["hosts"]["other"]["rules"][0]["protocol"] = "udp"
    after = validate_text(dump(spec), file="s.yml").fleet.hosts
    assert before["fw-pf"].digest() == after["fw-pf"].digest()
    assert before["other"].digest() != after["other"].digest()


def test_same_bytes_regardless_of_key_order():
    spec = _shape_spec(SHAPES[-1][1], "pf")
    reordered = json.loads(json.dumps(spec), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    first = _render.render(validate_text(dump(spec), file="a.yml").fleet.hosts["fw-pf"])
    second = _render.render(validate_text(dump(reordered), file="b.yml").fleet.hosts["fw-pf"])
    assert first == second


def test_same_bytes_under_different_hash_seeds(tmp_path):
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = subprocess_env(PYTHONHASHSEED=seed)
        code = ("import sys; from ansible_collections.divert.fleet.plugins.module_utils import _validate, _render;"
                "r = _validate.validate_file(sys.argv[1]);"
                "sys.stdout.write(''.join(_render.render(h) for h in r.fleet.hosts.values()))")
        outputs.add(subprocess.check_output([sys.executable, "-c", code, os.path.join(EXAMPLES, "fleet.yml")],
                                            env=env))
    assert len(outputs) == 1


_SAFE_TOKEN = re.compile(r'^[A-Za-z0-9_.:/{},"\-]+$')


def test_rendered_tokens_come_only_from_validated_text():
    """No rendered rule line carries a character the schema patterns exclude."""
    for name, fields, backends in SHAPES:
        for backend in backends:
            host = validate_text(dump(_shape_spec(fields, backend)), file="s.yml").fleet.hosts["fw-%s" % backend]
            for line in _render.render(host).splitlines():
                if line.startswith("#"):
                    continue
                assert "\n" not in line and ";" not in line and "#" not in line and "\\" not in line
                assert line.count('"') in (0, 2)
                for token in line.split():
                    assert _SAFE_TOKEN.match(token), (line, token)


def test_divert_ports_lists_each_port_once():
    host = validate_file(os.path.join(EXAMPLES, "fleet.yml")).fleet.hosts["fw-edge-02"]
    assert _render.divert_ports(host) == [8000, 8400]


def test_the_digest_is_of_the_canonical_json_of_the_resolved_host():
    """Host.canonical() writes the text from its consumers' and rules' own (shared) texts: byte for byte what
    dumping as_dict() with sorted keys writes, so digests (and the golden files) do not change."""
    import hashlib
    reports = [validate_file(os.path.join(EXAMPLES, "fleet.yml")), validate_text(dump(base()))]
    for report in reports:
        for host in report.fleet.hosts.values():
            canonical = json.dumps(host.as_dict(), sort_keys=True, separators=(",", ":"))
            assert host.canonical() == canonical
            assert host.digest() == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
