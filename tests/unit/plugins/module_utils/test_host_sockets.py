# -*- coding: utf-8 -*-
"""Reading the kernel's divert sockets and waiting for groups to be whole."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_os import GroupTimeout, HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import (
    attribute, read_divert_sockets, wait_for_groups)

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import GROUPS, WHOLE, FakeFreeBSD
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.test_host_parse import _pcblist_dump


def test_read_divert_sockets_counts_from_the_pcblist(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE)
    table, source = read_divert_sockets(fake.host(tmp_path))
    assert source == "pcblist" and table[8000]["bound"] == 3 and table[8100]["bound"] == 1
    assert fake.log == ["sysctl -x net.inet.divert.pcblist"]


def test_read_divert_sockets_falls_back_to_sockstat_json_then_text(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, pcblist=False)
    table, source = read_divert_sockets(fake.host(tmp_path))
    assert source == "sockstat-json" and table[8000]["bound"] == 3
    fake = FakeFreeBSD(sockets=WHOLE, pcblist=False, libxo=False)
    table, source = read_divert_sockets(fake.host(tmp_path))
    assert source == "sockstat" and table[8000]["bound"] == 3
    assert fake.log == ["sysctl -x net.inet.divert.pcblist", "sockstat -4 -P divert --libxo json",
                        "sockstat -4 -P divert"]


def test_attribute_names_the_processes_and_keeps_the_kernels_counts(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE)
    host = fake.host(tmp_path)
    table = attribute(host, read_divert_sockets(host)[0])
    assert table[8000] == {"port": 8000, "bound": 3, "pids": [4211], "commands": ["divert-reflector"]}
    fake.fail["sysctl -x net.inet.divert.pcblist"] = (0, _pcblist_dump([8000]), "")
    assert attribute(host, read_divert_sockets(host)[0])[8000]["bound"] == 1


def test_read_divert_sockets_all_fail(tmp_path):
    fake = FakeFreeBSD()
    fake.fail["s"] = (1, "", "nope")
    with pytest.raises(HostError, match="cannot read divert sockets on fw1"):
        read_divert_sockets(fake.host(tmp_path))


def test_wait_for_groups_polls_until_whole(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE[:1])
    polls = []

    def bind_one_more(_argv):
        polls.append(1)
        if len(fake.sockets) < 4:
            fake.sockets.append(WHOLE[len(fake.sockets)])

    fake.on["sysctl -x net.inet.divert.pcblist"] = bind_one_more
    table, source, count = wait_for_groups(fake.host(tmp_path), GROUPS, timeout=30)
    assert table[8000]["bound"] == 3 and table[8100]["bound"] == 1 and count >= 3


def test_wait_for_groups_times_out_with_host_port_counts(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE[:2])
    with pytest.raises(GroupTimeout) as info:
        wait_for_groups(fake.host(tmp_path, name="fw-edge-01"), GROUPS, timeout=5)
    message = info.value.message
    assert "host fw-edge-01 port 8000: 3 socket(s) declared, 2 bound" in message
    assert "host fw-edge-01 port 8100: 1 socket(s) declared, 0 bound" in message
    assert info.value.details["incomplete"][0] == {"port": 8000, "expected": 3, "bound": 2}


def test_wait_for_groups_gives_each_port_its_own_timeout(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE[:3])  # port 8000 whole, 8100 never binds
    host = fake.host(tmp_path)
    with pytest.raises(GroupTimeout) as info:
        wait_for_groups(host, GROUPS, timeout={8000: 90, 8100: 5})
    assert "after 5s" in info.value.message and "port 8100: 1 socket(s) declared, 0 bound" in info.value.message
    assert 5 <= host.clock() < 7  # gave up at 8100's own limit, not 8000's 90 s


def test_wait_for_groups_wants_exactly_the_count(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE + [(8100, 5000, "intruder")])
    with pytest.raises(GroupTimeout, match="port 8100: 1 socket.s. declared, 2 bound"):
        wait_for_groups(fake.host(tmp_path), GROUPS, timeout=1)
