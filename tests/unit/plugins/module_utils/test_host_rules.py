# -*- coding: utf-8 -*-
"""The pf and ipfw rule transactions (I1, I4) and pf's main ruleset."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import (
    IpfwBackend, opnsense_plugin, pf_conf_with_anchor)
from ansible_collections.divert.fleet.plugins.module_utils._host_parse import pf_divert_ports
from ansible_collections.divert.fleet.plugins.module_utils._host_rules import apply_rules

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import (
    GROUPS, IPFW_PRINTED_SET5, IPFW_WANTED, PF_CHANGED, PF_PRINTED, PF_WANTED, WHOLE, FakeFreeBSD, pf_host)

# --- pf transaction -------------------------------------------------------------------


def test_pf_load_order_check_compare_sockets_load_readback(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, pf_conf='anchor "divert_fleet"\n',
                                  rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    assert result["changed"] and result["actions"][0] == "loaded 5 rule(s)"
    check = fake.index("pfctl -o none -a divert_fleet -nf")
    sockets = fake.index("sysctl -x net.inet.divert.pcblist")
    load = fake.index("pfctl -o none -a divert_fleet -f")
    assert check < sockets < load
    assert fake.log[load + 1] == "pfctl -a divert_fleet -s rules"  # read back
    assert fake.loaded_files == [PF_WANTED]


def test_pf_no_change_loads_nothing(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_conf='anchor "divert_fleet"\n',
                                  rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    apply_rules(host, backend, PF_WANTED, GROUPS)
    fake.log[:] = []
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    assert not result["changed"], result
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and not fake.commands("sysctl -x net.inet.divert.pcblist")
    assert not fake.commands("pfctl -e") and not fake.commands("pfctl -f")


def test_pf_refuses_when_a_group_is_incomplete(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE[:2] + WHOLE[3:], anchor_printed=PF_PRINTED)
    with pytest.raises(HostError) as info:
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert "host fw1 port 8000: 3 socket(s) declared, 2 bound" in info.value.message
    assert "previous rules stay in force" in info.value.message
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and fake.anchor_printed == PF_PRINTED


def test_pf_refuses_a_port_no_group_declares(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    with pytest.raises(HostError, match="port.s. 8100 that no declared group binds"):
        apply_rules(host, backend, PF_WANTED, {8000: 3})
    assert not fake.commands("pfctl -o none -a divert_fleet -f")


def test_pf_syntax_error_changes_nothing(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED)
    fake.fail["pfctl -o none -a divert_fleet -nf"] = (1, "", "/tmp/x:1: syntax error\n")
    with pytest.raises(HostError, match="syntax check"):
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and not fake.commands("sysctl -x net.inet.divert.pcblist")


def test_pf_failed_load_reports_and_keeps_old(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED)
    fake.fail["pfctl -o none -a divert_fleet -f"] = (1, "", "pfctl: DIOCADDRULENV: Invalid argument\n")
    with pytest.raises(HostError, match="loading pf anchor divert_fleet"):
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert fake.anchor_printed == PF_PRINTED


def test_pf_read_back_mismatch_fails(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    fake.pf_prints[PF_WANTED] = PF_PRINTED.split("\n", 1)[1]  # the kernel lost a rule
    with pytest.raises(HostError, match="read back"):
        apply_rules(host, backend, PF_WANTED, GROUPS)


def test_pf_check_mode_loads_nothing_and_diffs(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_enabled=False, pf_conf="")
    result = apply_rules(host, backend, PF_CHANGED, GROUPS, check_mode=True)
    assert result["changed"]
    assert "port = 5353" in result["diff"]["after"] and "port = 53 " in result["diff"]["before"]
    mutating = [c for c in fake.log if c.startswith(("pfctl -o none -a divert_fleet -f", "pfctl -e", "pfctl -f",
                                                     "sysrc pf", "sysrc divert"))]
    assert mutating == []
    assert not (tmp_path / "var").exists() and (tmp_path / "etc" / "pf.conf").read_text() == ""


def test_pf_enables_pf_and_references_anchor_on_freebsd(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE, pf_enabled=False, pf_conf="block in all\n", main_rules="")
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    conf = (tmp_path / "etc" / "pf.conf").read_text()
    assert conf.startswith("block in all\n") and conf.endswith('anchor "divert_fleet"\n')
    assert fake.index("pfctl -nf") < fake.index("pfctl -f /etc/pf.conf") < fake.index("pfctl -e")
    assert fake.rc_conf["pf_enable"] == "YES" and "pfctl -e" in result["actions"]


def test_pf_opnsense_plugin_registers_the_anchor(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense")
    plugin = (tmp_path / "usr/local/etc/inc/plugins.inc.d/divert_fleet.inc").read_text()
    assert "function divert_fleet_firewall($fw)" in plugin
    assert "$fw->registerAnchor('divert_fleet', 'fw', 0, 'head', true);" in plugin
    assert fake.commands("configctl filter reload") and not fake.commands("pfctl -f /etc/pf.conf")
    fake.log[:] = []
    apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense")
    assert not fake.commands("configctl")


def test_pf_absent_flushes(tmp_path):
    fake, host, backend = pf_host(tmp_path, anchor_printed=PF_PRINTED)
    result = apply_rules(host, backend, "", {}, state="absent")
    assert result["changed"] and fake.commands("pfctl -a divert_fleet -F rules") and fake.anchor_printed == ""
    assert not apply_rules(host, backend, "", {}, state="absent")["changed"]


def test_pf_withdraw_one_port_keeps_the_others(tmp_path):
    fake, host, backend = pf_host(tmp_path, anchor_printed=PF_PRINTED)
    withdrawn = backend.withdraw_ports([8000])
    assert len(withdrawn) == 4
    assert fake.loaded_files == [PF_PRINTED.split("\n")[4] + "\n"]
    assert pf_divert_ports(fake.anchor_printed) == {8100}


# --- ipfw transaction ------------------------------------------------------------------

def test_ipfw_swap_sequence(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, ipfw_list="10000 set 5 divert 8000 ip from any to any\n")
    host = fake.host(tmp_path)
    result = apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS)
    assert result["changed"]
    assert fake.index("ipfw -n -q") < fake.index("sysctl -x net.inet.divert.pcblist") < fake.index("ipfw -f -q /")
    assert fake.loaded_files[0].splitlines() == [
        "delete set 6", "set disable 6",
        "add 10000 set 6 divert 8000 tcp from any to any in via igb0 ip4",
        "add 10010 set 6 divert 8000 ip4 from any to 10.0.0.0/8 in",
        "set swap 5 6", "delete set 6", "set enable 6"]
    assert fake.ipfw_list == IPFW_PRINTED_SET5
    fake.log[:] = []
    assert not apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS)["changed"]
    assert not fake.commands("ipfw -f")


def test_ipfw_diff_is_in_ipfws_own_syntax(tmp_path):
    """A rule that stays is shown as ipfw printed it; a new one as the command that adds it."""
    first_printed = IPFW_PRINTED_SET5.splitlines()[0]
    fake = FakeFreeBSD(sockets=WHOLE, ipfw_list=first_printed + "\n")
    host = fake.host(tmp_path)
    diff = apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS, check_mode=True)["diff"]
    assert diff["before"] == first_printed + "\n"
    assert diff["after"] == first_printed + "\nadd 10010 set 5 divert 8000 ip4 from any to 10.0.0.0/8 in\n"
    assert "|" not in diff["before"] + diff["after"]


def test_ipfw_failure_deletes_the_spare_set(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, ipfw_list="10000 set 5 divert 8000 ip from any to any\n")
    fake.fail["ipfw -f -q /"] = (69, "", "ipfw: setsockopt(IP_FW_XADD): Invalid argument\n")
    host = fake.host(tmp_path)
    with pytest.raises(HostError, match="spare set deleted, live set untouched"):
        apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS)
    assert fake.log[-1] == "ipfw -f -q delete set 6"
    assert fake.ipfw_list == "10000 set 5 divert 8000 ip from any to any\n"


def test_ipfw_sets_must_differ():
    with pytest.raises(HostError):
        IpfwBackend(None, 5, 5)
    with pytest.raises(HostError):
        IpfwBackend(None, 5, 31)


def test_ipfw_withdraw_port(tmp_path):
    fake = FakeFreeBSD(ipfw_list=IPFW_PRINTED_SET5 + "10020 set 5 divert 8100 ip4 from any to any\n")
    host = fake.host(tmp_path)
    withdrawn = IpfwBackend(host, 5, 6).withdraw_ports([8000])
    assert len(withdrawn) == 2
    assert "add 10020 set 6 divert 8100 ip4 from any to any" in fake.loaded_files[0]
    assert "8000" not in fake.loaded_files[0].replace("set 6", "")


def test_pf_module_loaded_before_the_first_check_on_a_fresh_freebsd(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    fake.fail["pfctl -a divert_fleet -s rules"] = (1, "", "pfctl: /dev/pf: No such file or directory\n")
    loaded = []

    def kldload_pf(_argv):
        loaded.append(True)
        fake.fail.pop("pfctl -a divert_fleet -s rules")
    fake.on["kldload pf"] = kldload_pf
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    assert loaded and "kldload pf" in result["actions"]
    assert fake.index("kldload pf") < fake.index("pfctl -o none -a divert_fleet -nf")
    assert fake.loaded_files == [PF_WANTED]


def test_pf_module_not_loaded_in_check_mode(tmp_path):
    fake, host, backend = pf_host(tmp_path, sockets=WHOLE)
    fake.fail["pfctl -a divert_fleet -s rules"] = (1, "", "pfctl: /dev/pf: No such file or directory\n")
    result = apply_rules(host, backend, PF_WANTED, GROUPS, check_mode=True)
    assert "kldload pf" in result["actions"] and result["changed"]
    assert not fake.commands("kldload") and not fake.commands("pfctl -o none -a divert_fleet -nf")


# --- where the anchor is evaluated ------------------------------------------------------------

PF_CONF = ('set skip on lo0\nscrub in all\nnat on em0 from 10.0.0.0/8 to any -> (em0)\n'
           'block in all\npass out all keep state\n')


def test_tail_placement_appends_after_the_operators_rules():
    text = pf_conf_with_anchor(PF_CONF, "divert_fleet", "tail")
    assert text.startswith(PF_CONF) and text.endswith('anchor "divert_fleet"\n')


def test_head_placement_goes_before_the_first_filter_rule():
    text = pf_conf_with_anchor(PF_CONF, "divert_fleet", "head").splitlines()
    anchor = text.index('anchor "divert_fleet"')
    assert text[anchor + 1] == "block in all" and text.index("nat on em0 from 10.0.0.0/8 to any -> (em0)") < anchor


def test_opnsense_hook_registers_the_chosen_placement_and_priority():
    assert "$fw->registerAnchor('divert_fleet', 'fw', 0, 'head', true);" in opnsense_plugin("divert_fleet")
    assert "$fw->registerAnchor('x', 'fw', 7, 'tail', true);" in opnsense_plugin("x", "tail", 7)


def test_first_rollout_in_check_mode_on_a_host_without_pf(tmp_path):
    """Check mode never fails where the real run would succeed: without pf.ko nothing can be read."""
    fake, host, backend = pf_host(tmp_path, pf_conf="block in all\n")
    fake.fail["pfctl -a divert_fleet -s rules"] = (1, "", "pfctl: /dev/pf: No such file or directory\n")
    fake.fail["pfctl -s"] = (1, "", "pfctl: /dev/pf: No such file or directory\n")
    result = apply_rules(host, backend, PF_WANTED, GROUPS, check_mode=True)
    assert result["changed"] and "kldload pf" in result["actions"] and "pfctl -e" in result["actions"]
    assert 'added anchor "divert_fleet" at the tail of /etc/pf.conf' in result["actions"]
    assert (tmp_path / "etc/pf.conf").read_text() == "block in all\n"
