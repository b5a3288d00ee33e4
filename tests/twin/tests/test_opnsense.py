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


def test_fact_boot_runs_start_syshooks_around_rc_freebsd(opn):
    """fact: `rc.syshook start` runs its hooks in name order, 20-freebsd among them running the
    enabled rc.d scripts; a script enabled in rc.conf and placed in start/ runs twice."""
    opn.write("/usr/local/etc/rc.syshook.d/start/10-first", "#!/bin/sh\necho 10-first >> /var/run/order\n")
    opn.write("/usr/local/etc/rc.syshook.d/start/90-last", "#!/bin/sh\necho 90-last >> /var/run/order\n")
    script = ("#!/bin/sh\n# PROVIDE: both\n. /etc/rc.subr\nname=both\nrcvar=both_enable\nload_rc_config $name\n"
              "start_cmd=both_start\nboth_start() { echo both >> /var/run/order; }\nrun_rc_command \"$1\"\n")
    opn.write("/usr/local/etc/rc.d/both", script)
    opn.write("/usr/local/etc/rc.syshook.d/start/50-both", "#!/bin/sh\n/usr/local/etc/rc.d/both onestart\n")
    opn.sh("chmod 755 /usr/local/etc/rc.d/both && sysrc -q both_enable=YES", check=True)
    opn.twinctl("reboot", "--host", "opn")
    assert opn.sh("cat /var/run/order").stdout.split() == ["10-first", "both", "both", "90-last"]
