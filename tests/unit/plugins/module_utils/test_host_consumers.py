# -*- coding: utf-8 -*-
"""Consumers on a host: rc.conf, services, restarts after withdrawal (I2), waiting."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_os import GroupTimeout, HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import ensure_consumers
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import PfBackend
from ansible_collections.divert.fleet.plugins.module_utils._host_gate import deploy_rules

from ansible_collections.divert.fleet.plugins.module_utils._host_parse import pf_divert_ports

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import GROUPS, PF_PRINTED, PF_WANTED, WHOLE, FakeFreeBSD, pf_host


# --- consumers --------------------------------------------------------------------------

CONSUMERS = [
    {"name": "probe", "port": 8000, "sockets": 3, "service": "divert_reflector", "rc_vars": {},
     "ready_timeout": 10, "reference": True},
    {"name": "appid", "port": 8100, "sockets": 1, "service": "appidd", "rc_vars": {"appidd_flags": "-p 8100"},
     "ready_timeout": 10, "reference": False},
]


def _bind_on_start(fake):
    def hook(argv):
        service = argv[1]
        port = 8000 if service == "divert_reflector" else 8100
        fake.sockets = [s for s in fake.sockets if s[0] != port]
        fake.sockets += [s for s in WHOLE if s[0] == port]
    fake.on["service divert_reflector start"] = hook
    fake.on["service divert_reflector restart"] = hook
    fake.on["service appidd start"] = hook
    fake.on["service appidd restart"] = hook


def test_consumers_first_run(tmp_path):
    fake = FakeFreeBSD(kld_loaded=False, rc_conf={"kld_list": "vmm"})
    _bind_on_start(fake)
    host = fake.host(tmp_path)
    result = ensure_consumers(host, CONSUMERS, "print('reflector')\n", PfBackend(host, "divert_fleet"))
    assert fake.commands("kldload ipdivert") and fake.rc_conf["kld_list"] == "vmm ipdivert"
    assert fake.rc_conf["divert_reflector_port"] == "8000" and fake.rc_conf["divert_reflector_sockets"] == "3"
    assert fake.rc_conf["divert_reflector_user"] == "nobody" and fake.rc_conf["appidd_enable"] == "YES"
    assert fake.index("sysrc appidd_enable") < fake.index("service divert_reflector start")
    assert [c["action"] for c in result["consumers"]] == ["start", "start"]
    assert (tmp_path / "usr/local/libexec/divert-reflector").read_text() == "print('reflector')\n"
    assert "divert_reflector_port" in (tmp_path / "usr/local/etc/rc.d/divert_reflector").read_text()
    assert result["sockets"]["8000"]["bound"] == 3
    fake.log[:] = []
    again = ensure_consumers(host, CONSUMERS, "print('reflector')\n", PfBackend(host, "divert_fleet"))
    assert not again["changed"], again
    assert not [c for c in fake.log if c.startswith(("service divert_reflector start", "sysrc kld", "kldload"))]
    # a run that changes nothing reads the kernel's sockets and rc.conf once each, nothing more
    assert [c.split()[0] for c in fake.log] == ["sockstat", "sysrc"], fake.log


def test_pf_no_change_costs_the_fewest_commands(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_conf='anchor "divert_fleet"\n',
                                  rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    deploy_rules(host, backend, PF_WANTED, GROUPS)
    fake.log[:] = []
    deploy_rules(host, backend, PF_WANTED, GROUPS)
    # no syntax check of text already loaded, no load: only reads
    assert fake.log == ["pfctl -a divert_fleet -s rules", "pfctl -s rules", "sysrc -e pf_enable", "pfctl -s info",
                        "sysrc -e divert_fleet_enable"]


def test_changed_consumer_restarts_only_after_its_rules_are_withdrawn(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, anchor_printed=PF_PRINTED, running=["divert_reflector", "appidd"],
                       rc_conf={"kld_list": "ipdivert", "appidd_enable": "YES", "appidd_flags": "-p 8100",
                                "divert_reflector_enable": "YES", "divert_reflector_port": "8000",
                                "divert_reflector_sockets": "3", "divert_reflector_user": "nobody"})
    _bind_on_start(fake)
    host = fake.host(tmp_path)
    ensure_consumers(host, CONSUMERS, "v1\n", PfBackend(host, "divert_fleet"))  # records v1
    fake.anchor_printed = PF_PRINTED
    fake.log[:] = []
    fake.loaded_files[:] = []
    result = ensure_consumers(host, CONSUMERS, "v2\n", PfBackend(host, "divert_fleet"))
    actions = {c["name"]: c["action"] for c in result["consumers"]}
    assert actions == {"probe": "restart", "appid": None}
    assert fake.index("pfctl -o none -a divert_fleet -f") < fake.index("service divert_reflector restart")
    assert pf_divert_ports(fake.anchor_printed) == {8100}  # 8000's rules withdrawn, 8100's kept
    assert len(result["withdrawn"]) == 4


def test_consumers_check_mode_changes_nothing(tmp_path):
    fake = FakeFreeBSD(kld_loaded=False, anchor_printed=PF_PRINTED)
    host = fake.host(tmp_path)
    result = ensure_consumers(host, CONSUMERS, "v1\n", PfBackend(host, "divert_fleet"), check_mode=True)
    assert result["changed"] and len(result["withdrawn"]) == 5
    assert "appidd_flags=\"-p 8100\"" in result["diff"]["after"]
    mutating = [c for c in fake.log if not c.startswith(("kldstat", "sysrc -e", "sockstat", "service appidd onestatus",
                                                         "service divert_reflector onestatus", "pfctl -a divert_fleet -s"))]
    assert mutating == [] and not (tmp_path / "usr").exists()
    assert fake.anchor_printed == PF_PRINTED


def test_consumers_need_the_reference_program(tmp_path):
    fake = FakeFreeBSD()
    with pytest.raises(HostError, match="reference_program"):
        ensure_consumers(fake.host(tmp_path), CONSUMERS, None, None)


def test_consumer_wait_timeout_names_the_group(tmp_path):
    fake = FakeFreeBSD(rc_conf={"kld_list": "ipdivert"})
    host = fake.host(tmp_path)
    with pytest.raises(GroupTimeout, match="port 8000: 3 socket.s. declared, 0 bound"):
        ensure_consumers(host, CONSUMERS, "v1\n", None)
