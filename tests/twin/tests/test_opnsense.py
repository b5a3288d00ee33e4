"""OPNsense flavour (freebsd-facts.md: "OPNsense", "Boot order")."""

INC = """<?php
function fleet_firewall($fw)
{
    $fw->registerAnchor('divert_fleet', 'fw', 0, 'head', true);
}
"""


def test_filter_reload_references_exactly_registered_anchors(opn):
    opn.sh("kldload -n ipdivert", check=True)
    opn.sh("pfctl -a divert_fleet -f /dev/null; pfctl -a other -f /dev/null")
    opn.write("/etc/a.conf", "pass in quick proto tcp to port 80 divert-to 8000\n")
    opn.sh("pfctl -a divert_fleet -f /etc/a.conf && pfctl -a other -f /etc/a.conf", check=True)
    assert opn.call(op="state")["live_ports"] == []        # no hook registers them yet
    opn.write("/usr/local/etc/inc/plugins.inc.d/fleet.inc", INC)
    assert opn.sh("configctl filter reload").stdout.strip() == "OK"
    main = opn.sh("pfctl -s rules").stdout
    assert 'anchor "divert_fleet" quick all' in main and '"other"' not in main
    assert main.index("divert_fleet") < main.index("Default deny")           # head
    assert "divert-to 8000" in opn.sh("pfctl -a divert_fleet -s rules").stdout  # contents survive
    assert opn.call(op="state")["live_ports"] == [8000]


def test_boot_runs_early_hooks_then_filter_then_services(opn):
    opn.write("/usr/local/etc/inc/plugins.inc.d/fleet.inc", INC)
    opn.write("/usr/local/etc/rc.syshook.d/early/50-fleet",
              "#!/bin/sh\necho hook $(pfctl -s rules | wc -l) >> /var/run/order\n")
    opn.install_consumer(port=8000, sockets=1)
    # the consumer's rc.d script loads what it needs (rc.subr required_modules)
    opn.sh("sed -i 's/^pidfile=/required_modules=\"ipdivert\"\\npidfile=/' /usr/local/etc/rc.d/twinconsumer",
           check=True)
    opn.twinctl("reboot", "--host", "opn")
    opn.wait_sockets(8000, 1)
    assert opn.sh("cat /var/run/order").stdout.split() == ["hook", "0"]   # before the filter
    st = opn.call(op="state")
    assert st["pf_enabled"] and "ipdivert" in st["modules"]
    assert 'anchor "divert_fleet"' in opn.sh("pfctl -s rules").stdout


def test_fact_opnsense_boot_does_not_honour_kld_list(opn):
    """fact: OPNsense does not run rc.d/kld at boot: kld_list loads nothing there."""
    opn.sh("sysrc -q kld_list=ipdivert", check=True)
    opn.install_consumer(port=8000, sockets=1)        # an rc.d script without required_modules
    opn.twinctl("reboot", "--host", "opn")
    assert "ipdivert" not in opn.call(op="state")["modules"]
    assert opn.call(op="wait_sockets", port=8000, count=1, timeout=0.5)["count"] == 0
