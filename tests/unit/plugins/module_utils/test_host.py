# -*- coding: utf-8 -*-
"""The on-host library: parsing FreeBSD's output, canonical rules, transactions, consumers, gate."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import os
import struct
import sys
import zipfile

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _host
from ansible_collections.divert.fleet.plugins.module_utils._host import (
    GroupTimeout, HostError, IpfwBackend, PfBackend, apply_rules, ensure_consumers, gate_main,
    ipfw_add_lines, ipfw_canonical, parse_pcblist, parse_sockstat_json, parse_sockstat_text,
    pf_canonical, pf_divert_ports, read_divert_sockets, summarise, wait_for_groups)

from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.host_fakes import (
    IPFW_PRINTED_SET5, IPFW_WANTED, PF_CHANGED, PF_PRINTED, PF_WANTED, FakeFreeBSD, sockstat_json,
    sockstat_text)

GROUPS = {8000: 3, 8100: 1}
WHOLE = [(8000, 4211, "divert-reflector")] * 3 + [(8100, 4300, "appidd")]


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


def _pcblist_dump(ports, xso_len=48):
    """A net.inet.divert.pcblist buffer as `sysctl -x` prints it: xinpgen, one xinpcb per socket
    (ksize_t xi_len; struct xsocket (starting with its own ksize_t xso_len); struct in_conninfo
    {u8 inc_flags; u8 inc_len; u16 inc_fibnum; in_endpoints {u16 ie_fport; u16 ie_lport; ...}}),
    closing xinpgen; host byte order little-endian, ports network order."""
    xig = struct.pack("<QI4xQQ", 32, len(ports), 7, 9)
    records = b""
    for port in ports:
        xso = struct.pack("<Q", xso_len) + b"\0" * (xso_len - 8)
        inc = struct.pack("<BBH", 0, 0, 0) + struct.pack("!HH", 0, port) + b"\0" * 40
        body = xso + inc + b"\0" * 64
        records += struct.pack("<Q", 8 + len(body)) + body
    data = xig + records + xig
    return "net.inet.divert.pcblist: Format:S,xinpcb Length:%d Dump:0x%s" % (
        len(data), binascii.hexlify(data).decode("ascii"))


def test_pcblist_ports():
    table = summarise(parse_pcblist(_pcblist_dump([8000, 8000, 8100])))
    assert {port: entry["bound"] for port, entry in table.items()} == {8000: 2, 8100: 1}


def test_pcblist_empty_and_garbage():
    assert parse_pcblist(_pcblist_dump([])) == []
    with pytest.raises(ValueError):
        parse_pcblist("net.inet.divert.pcblist: Format:S,xinpcb Length:4 Dump:0x0102...")


def test_read_divert_sockets_falls_back_to_plain_sockstat(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, libxo=False)
    table, source = read_divert_sockets(fake.host(tmp_path))
    assert source == "sockstat" and table[8000]["bound"] == 3
    assert fake.log == ["sockstat -4 -P divert --libxo json", "sockstat -4 -P divert"]


def test_read_divert_sockets_falls_back_to_pcblist(tmp_path):
    fake = FakeFreeBSD()
    fake.fail["sockstat"] = (1, "", "sockstat: Unable to contact Casper")
    fake.fail["sysctl -x net.inet.divert.pcblist"] = (0, _pcblist_dump([8000]), "")
    table, source = read_divert_sockets(fake.host(tmp_path))
    assert source == "pcblist" and table[8000]["bound"] == 1


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

    fake.on["sockstat"] = bind_one_more
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


# --- pf transaction -------------------------------------------------------------------

def _pf(tmp_path, **kwargs):
    fake = FakeFreeBSD(**kwargs)
    (tmp_path / "etc").mkdir(exist_ok=True)
    if fake.pf_conf is not None:
        (tmp_path / "etc" / "pf.conf").write_text(fake.pf_conf)
    host = fake.host(tmp_path)
    return fake, host, PfBackend(host, "divert_fleet")


def test_pf_load_order_check_compare_sockets_load_readback(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, pf_conf='anchor "divert_fleet"\n',
                              rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    assert result["changed"] and result["actions"][0] == "loaded 5 rule(s)"
    check = fake.index("pfctl -o none -a divert_fleet -nf")
    sockets = fake.index("sockstat")
    load = fake.index("pfctl -o none -a divert_fleet -f")
    assert check < sockets < load
    assert fake.log[load + 1] == "pfctl -a divert_fleet -s rules"  # read back
    assert fake.loaded_files == [PF_WANTED]


def test_pf_no_change_loads_nothing(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_conf='anchor "divert_fleet"\n',
                              rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    apply_rules(host, backend, PF_WANTED, GROUPS)
    fake.log[:] = []
    result = apply_rules(host, backend, PF_WANTED, GROUPS)
    assert not result["changed"], result
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and not fake.commands("sockstat")
    assert not fake.commands("pfctl -e") and not fake.commands("pfctl -f")


def test_pf_refuses_when_a_group_is_incomplete(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE[:2] + WHOLE[3:], anchor_printed=PF_PRINTED)
    with pytest.raises(HostError) as info:
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert "host fw1 port 8000: 3 socket(s) declared, 2 bound" in info.value.message
    assert "previous rules stay in force" in info.value.message
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and fake.anchor_printed == PF_PRINTED


def test_pf_refuses_a_port_no_group_declares(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    with pytest.raises(HostError, match="port.s. 8100 that no declared group binds"):
        apply_rules(host, backend, PF_WANTED, {8000: 3})
    assert not fake.commands("pfctl -o none -a divert_fleet -f")


def test_pf_syntax_error_changes_nothing(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED)
    fake.fail["pfctl -o none -a divert_fleet -nf"] = (1, "", "/tmp/x:1: syntax error\n")
    with pytest.raises(HostError, match="syntax check"):
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert not fake.commands("pfctl -o none -a divert_fleet -f") and not fake.commands("sockstat")


def test_pf_failed_load_reports_and_keeps_old(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED)
    fake.fail["pfctl -o none -a divert_fleet -f"] = (1, "", "pfctl: DIOCADDRULENV: Invalid argument\n")
    with pytest.raises(HostError, match="loading pf anchor divert_fleet"):
        apply_rules(host, backend, PF_CHANGED, GROUPS)
    assert fake.anchor_printed == PF_PRINTED


def test_pf_read_back_mismatch_fails(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    fake.pf_prints[PF_WANTED] = PF_PRINTED.split("\n", 1)[1]  # the kernel lost a rule
    with pytest.raises(HostError, match="read back"):
        apply_rules(host, backend, PF_WANTED, GROUPS)


def test_pf_check_mode_loads_nothing_and_diffs(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_enabled=False, pf_conf="")
    result = apply_rules(host, backend, PF_CHANGED, GROUPS, check_mode=True)
    assert result["changed"]
    assert "port = 5353" in result["diff"]["after"] and "port = 53 " in result["diff"]["before"]
    mutating = [c for c in fake.log if c.startswith(("pfctl -o none -a divert_fleet -f", "pfctl -e", "pfctl -f",
                                                     "sysrc pf", "sysrc divert"))]
    assert mutating == []
    assert not (tmp_path / "var").exists() and (tmp_path / "etc" / "pf.conf").read_text() == ""


def test_pf_enables_pf_and_references_anchor_on_freebsd(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, pf_enabled=False, pf_conf="block in all\n", main_rules="")
    result = apply_rules(host, backend, PF_WANTED, GROUPS, boot_gate=False)
    conf = (tmp_path / "etc" / "pf.conf").read_text()
    assert conf.startswith("block in all\n") and conf.endswith('anchor "divert_fleet"\n')
    assert fake.index("pfctl -nf") < fake.index("pfctl -f /etc/pf.conf") < fake.index("pfctl -e")
    assert fake.rc_conf["pf_enable"] == "YES" and "pfctl -e" in result["actions"]


def test_pf_opnsense_plugin_registers_the_anchor(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense", boot_gate=False)
    plugin = (tmp_path / "usr/local/etc/inc/plugins.inc.d/divert_fleet.inc").read_text()
    assert "function divert_fleet_firewall($fw)" in plugin
    assert "$fw->registerAnchor('divert_fleet', 'fw', 0, 'head', true);" in plugin
    assert fake.commands("configctl filter reload") and not fake.commands("pfctl -f /etc/pf.conf")
    fake.log[:] = []
    apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense", boot_gate=False)
    assert not fake.commands("configctl")


def test_pf_absent_flushes(tmp_path):
    fake, host, backend = _pf(tmp_path, anchor_printed=PF_PRINTED)
    result = apply_rules(host, backend, "", {}, state="absent", boot_gate=False)
    assert result["changed"] and fake.commands("pfctl -a divert_fleet -F rules") and fake.anchor_printed == ""
    assert not apply_rules(host, backend, "", {}, state="absent", boot_gate=False)["changed"]


def test_pf_withdraw_one_port_keeps_the_others(tmp_path):
    fake, host, backend = _pf(tmp_path, anchor_printed=PF_PRINTED)
    withdrawn = backend.withdraw_ports([8000])
    assert len(withdrawn) == 4
    assert fake.loaded_files == [PF_PRINTED.split("\n")[4] + "\n"]
    assert pf_divert_ports(fake.anchor_printed) == {8100}


# --- ipfw transaction ------------------------------------------------------------------

def test_ipfw_swap_sequence(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, ipfw_list="10000 set 5 divert 8000 ip from any to any\n")
    host = fake.host(tmp_path)
    result = apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS, boot_gate=False)
    assert result["changed"]
    assert fake.index("ipfw -n -q") < fake.index("sockstat") < fake.index("ipfw -f -q /")
    assert fake.loaded_files[0].splitlines() == [
        "delete set 6", "set disable 6",
        "add 10000 set 6 divert 8000 tcp from any to any in via igb0 ip4",
        "add 10010 set 6 divert 8000 ip4 from any to 10.0.0.0/8 in",
        "set swap 5 6", "delete set 6", "set enable 6"]
    assert fake.ipfw_list == IPFW_PRINTED_SET5
    fake.log[:] = []
    assert not apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS, boot_gate=False)["changed"]
    assert not fake.commands("ipfw -f")


def test_ipfw_failure_deletes_the_spare_set(tmp_path):
    fake = FakeFreeBSD(sockets=WHOLE, ipfw_list="10000 set 5 divert 8000 ip from any to any\n")
    fake.fail["ipfw -f -q /"] = (69, "", "ipfw: setsockopt(IP_FW_XADD): Invalid argument\n")
    host = fake.host(tmp_path)
    with pytest.raises(HostError, match="spare set deleted, live set untouched"):
        apply_rules(host, IpfwBackend(host, 5, 6), IPFW_WANTED, GROUPS, boot_gate=False)
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


# --- boot gate ---------------------------------------------------------------------------

def test_gate_program_is_this_library(tmp_path):
    program = _host.gate_program()
    assert program.startswith("#!/usr/local/bin/python3\n")
    assert 'if __name__ == "__main__":\n    raise SystemExit(gate_main())' in program
    with open(_host.__file__) as handle:
        assert program.split("\n", 1)[1] == handle.read()


def test_gate_program_from_inside_a_zip(tmp_path):
    """AnsiballZ imports module_utils from a zip: the source must come from the zip's loader."""
    archive = tmp_path / "payload.zip"
    with zipfile.ZipFile(str(archive), "w") as zf:
        with open(_host.__file__) as handle:
            zf.writestr("zipped_host.py", handle.read())
    sys.path.insert(0, str(archive))
    try:
        import zipped_host
        assert ".zip" in zipped_host.__file__
        assert zipped_host.gate_program() == _host.gate_program()
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop("zipped_host", None)


def test_boot_gate_installed_and_idempotent(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, pf_conf='anchor "divert_fleet"\n')
    result = apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense")
    assert "/usr/local/libexec/divert-fleet-gate" in result["boot_gate"]
    state = json.loads((tmp_path / "var/db/divert_fleet/state.json").read_text())
    assert state["groups"] == {"8000": 3, "8100": 1} and state["anchor"] == "divert_fleet"
    assert (tmp_path / "var/db/divert_fleet/rules").read_text() == PF_WANTED
    rc_script = (tmp_path / "usr/local/etc/rc.d/divert_fleet").read_text()
    assert "# PROVIDE: divert_fleet" in rc_script and "# REQUIRE: LOGIN" in rc_script
    assert os.access(str(tmp_path / "usr/local/etc/rc.syshook.d/start/50-divert_fleet"), os.X_OK)
    assert fake.rc_conf["divert_fleet_enable"] == "YES"
    again = apply_rules(host, backend, PF_WANTED, GROUPS, platform="opnsense")
    assert again["boot_gate"] == [] and not again["changed"]


def test_gate_main_loads_when_groups_are_whole(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    apply_rules(host, backend, PF_WANTED, GROUPS)
    fake.anchor_printed = ""  # after a reboot the anchor is empty
    fake.log[:] = []
    assert gate_main(["--state", "/var/db/divert_fleet/state.json"], host=host) == 0
    assert fake.anchor_printed == PF_PRINTED
    assert fake.index("sockstat") < fake.index("pfctl -o none -a divert_fleet -f")


def test_gate_main_leaves_rules_empty_when_groups_never_whole(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    apply_rules(host, backend, PF_WANTED, GROUPS)
    fake.anchor_printed = ""
    fake.sockets = WHOLE[:1]
    fake.log[:] = []
    assert gate_main(["--timeout", "3"], host=host) == 1
    assert not fake.commands("pfctl -o none -a divert_fleet -f")
    assert fake.commands("pfctl -a divert_fleet -F rules")


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
    fake, host, backend = _pf(tmp_path, sockets=WHOLE, anchor_printed=PF_PRINTED, pf_conf='anchor "divert_fleet"\n',
                              rc_conf={"pf_enable": "YES", "divert_fleet_enable": "YES"})
    apply_rules(host, backend, PF_WANTED, GROUPS)
    fake.log[:] = []
    apply_rules(host, backend, PF_WANTED, GROUPS)
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


def test_pf_module_loaded_before_the_first_check_on_a_fresh_freebsd(tmp_path):
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
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
    fake, host, backend = _pf(tmp_path, sockets=WHOLE)
    fake.fail["pfctl -a divert_fleet -s rules"] = (1, "", "pfctl: /dev/pf: No such file or directory\n")
    result = apply_rules(host, backend, PF_WANTED, GROUPS, check_mode=True)
    assert "kldload pf" in result["actions"] and result["changed"]
    assert not fake.commands("kldload") and not fake.commands("pfctl -o none -a divert_fleet -nf")
