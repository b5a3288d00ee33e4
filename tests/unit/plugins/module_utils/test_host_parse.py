# -*- coding: utf-8 -*-
"""The on-host parsers: sockstat and pcblist output, pf's and ipfw's canonical rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_parse import (
    ipfw_add_lines, ipfw_canonical, parse_pcblist, parse_sockstat_json, parse_sockstat_text, pf_canonical,
    pf_divert_ports, summarise)

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import (
    IPFW_PRINTED_SET5, IPFW_WANTED, PF_CHANGED, PF_PRINTED, PF_WANTED, WHOLE, pcblist_dump as _pcblist_dump,
    sockstat_json, sockstat_text)


# --- sockets ------------------------------------------------------------------------

def test_sockstat_json_rows():
    rows = parse_sockstat_json(sockstat_json(WHOLE + [(8200, None, None)]))
    table = summarise(rows)
    assert table[8000] == {"port": 8000, "bound": 3, "pids": [4211], "commands": ["divert-reflector"]}
    assert table[8100]["bound"] == 1
    assert table[8200] == {"port": 8200, "bound": 1, "pids": [], "commands": []}


def test_sockstat_json_numbers_as_strings_and_other_protocols():
    text = json.dumps({"__version": "1", "sockstat": {"socket": [
        {"user": "root", "command": "suricata", "pid": "812", "fd": "7", "proto": "div4",
         "local": {"address": "*", "port": "8000"}, "foreign": {"address": "*", "port": "0"}},
        {"user": "root", "command": "sshd", "pid": "90", "fd": "4", "proto": "tcp4",
         "local": {"address": "*", "port": "22"}, "foreign": {"address": "*", "port": "0"}}]}})
    assert summarise(parse_sockstat_json(text)) == {
        8000: {"port": 8000, "bound": 1, "pids": [812], "commands": ["suricata"]}}


def test_sockstat_json_rejects_other_json():
    with pytest.raises(ValueError):
        parse_sockstat_json('{"something": []}')


def test_sockstat_text_rows_read_from_the_right():
    text = sockstat_text(WHOLE + [(8200, None, None)])
    text += "root     my daemon  77    5   div4   *:8300                *:*\n"
    table = summarise(parse_sockstat_text(text))
    assert table[8000]["bound"] == 3 and table[8000]["commands"] == ["divert-ref"]  # COMMAND is cut to 10
    assert table[8200] == {"port": 8200, "bound": 1, "pids": [], "commands": []}
    assert table[8300]["commands"] == ["my daemon"] and table[8300]["pids"] == [77]


def test_pcblist_ports():
    table = summarise(parse_pcblist(_pcblist_dump([8000, 8000, 8100])))
    assert {port: entry["bound"] for port, entry in table.items()} == {8000: 2, 8100: 1}


def test_pcblist_names_each_socket_once():
    rows = parse_pcblist(_pcblist_dump([8000, 8000]))
    assert [row["port"] for row in rows] == [8000, 8000]
    assert len({row["socket"] for row in rows}) == 2


def test_rows_naming_one_socket_count_once():
    """A socket a forked child shares is one socket, though sockstat shows a row per process."""
    rows = [{"port": 8000, "pid": 10, "command": "suricata", "socket": 1},
            {"port": 8000, "pid": 11, "command": "suricata", "socket": 1},
            {"port": 8000, "pid": 11, "command": "suricata", "socket": 2}]
    assert summarise(rows)[8000]["bound"] == 2
    assert summarise([dict(r, socket=None) for r in rows])[8000]["bound"] == 3


def test_pcblist_empty_and_garbage():
    assert parse_pcblist(_pcblist_dump([])) == []
    with pytest.raises(ValueError):
        parse_pcblist("net.inet.divert.pcblist: Format:S,xinpcb Length:4 Dump:0x0102...")


# --- canonical rules --------------------------------------------------------------

def test_pf_wanted_and_printed_are_the_same_rules():
    assert pf_canonical(PF_WANTED) == pf_canonical(PF_PRINTED)
    assert len(pf_canonical(PF_WANTED)) == 5


def test_pf_canonical_sees_a_real_difference():
    assert pf_canonical(PF_CHANGED) != pf_canonical(PF_PRINTED)


@pytest.mark.parametrize("wanted, printed", [
    ("pass quick inet from any to any keep state divert-to 9000",
     "pass quick inet all flags S/SA keep state divert-to 9000"),
    ("pass in quick inet proto tcp from 10.1.2.3/32 to any port 1000:2000 keep state divert-to 9000",
     "pass in quick inet proto tcp from 10.1.2.3 to any port 1000:2000 flags S/SA keep state divert-to 9000"),
    ("pass in quick inet proto icmp from any to any no state divert-to 9000",
     "pass in quick inet proto icmp all no state divert-to 9000"),
    ("pass in quick inet proto tcp from any to any port 80 divert-to 127.0.0.1 port 9000",
     "pass in quick inet proto tcp from any to any port = http flags S/SA keep state divert-to 9000"),
])
def test_pf_canonical_print_rules(wanted, printed):
    assert pf_canonical(wanted) == pf_canonical(printed)


def test_pf_divert_ports():
    assert pf_divert_ports(PF_WANTED) == {8000, 8100}


def test_ipfw_wanted_and_printed_are_the_same_rules():
    assert ipfw_canonical(IPFW_WANTED, 5) == ipfw_canonical(IPFW_PRINTED_SET5, 5)
    assert ipfw_canonical(IPFW_WANTED.replace("10.0.0.0/8", "10.0.0.0/16"), 5) != ipfw_canonical(IPFW_PRINTED_SET5, 5)


def test_ipfw_add_lines_move_to_the_spare_set():
    assert ipfw_add_lines(IPFW_WANTED, 5, 6) == [
        "add 10000 set 6 divert 8000 tcp from any to any in via igb0 ip4",
        "add 10010 set 6 divert 8000 ip4 from any to 10.0.0.0/8 in"]
    with pytest.raises(HostError, match="set 7 but the host's set is 5"):
        ipfw_add_lines("add 100 set 7 divert 8000 ip from any to any\n", 5, 6)
    with pytest.raises(HostError, match="must be `add NUMBER set 5"):
        ipfw_add_lines("flush\n", 5, 6)
