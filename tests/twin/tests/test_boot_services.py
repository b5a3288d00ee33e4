"""Services, rc.conf, reboot and boot order (freebsd-facts.md: "Boot order")."""
import os
import subprocess
import sys

import pytest

from twin_fixtures import divert_setup


def test_service_messages_and_exit_codes(host):
    host.install_consumer(enable=False)
    r = host.sh("service twinconsumer start")
    assert r.stdout.strip() == ("Cannot 'start' twinconsumer. Set twinconsumer_enable to YES in "
                                "/etc/rc.conf or use 'onestart' instead of 'start'.")
    r = host.sh("service twinconsumer status")
    assert r.returncode == 1 and r.stdout.strip() == "twinconsumer is not running."
    assert host.sh("service twinconsumer enabled").returncode == 1
    host.sh("kldload ipdivert", check=True)
    assert host.sh("service twinconsumer onestart").returncode == 0
    host.wait_sockets(8000, 1)
    r = host.sh("service twinconsumer onestatus")
    assert r.returncode == 0 and "is running as pid" in r.stdout
    r = host.sh("service twinconsumer onestop")
    assert r.returncode == 0 and r.stdout.startswith("Stopping twinconsumer.")
    host.wait_sockets(8000, 0)
    assert host.sh("service nosuch start").returncode == 1


def test_sysrc_unknown_variables_fail_for_reading_and_deleting(host):
    """usr.sbin/sysrc/sysrc: a NAME without `=` is looked up first; an unset one is reported and
    the exit status is 1, also with -x, and also when -i or -q hide the message."""
    host.sh("sysrc -q fact_set=YES", check=True)
    r = host.sh("sysrc -e fact_set fact_unset")
    assert r.returncode == 1 and r.stdout == 'fact_set="YES"\n' and "unknown variable 'fact_unset'" in r.stderr
    assert host.sh("sysrc -i -e fact_unset").returncode == 1
    r = host.sh("sysrc -x fact_unset")
    assert r.returncode == 1 and "unknown variable 'fact_unset'" in r.stderr
    r = host.sh("sysrc -q -x fact_unset")
    assert r.returncode == 1 and r.stderr == ""
    assert host.sh("sysrc -x fact_set").returncode == 0
    assert host.sh("sysrc -x fact_set").returncode == 1  # gone now


def test_reboot_ends_consumers_clears_rules_and_boots_in_rc_order(host):
    host.install_consumer(port=8000, sockets=3)
    host.sh("sysrc -q kld_list=ipdivert pf_enable=YES", check=True)
    host.write("/etc/pf.conf", 'pass all\nanchor "fleet"\n')
    divert_setup(host, 3)
    host.pf_load("pass in quick proto tcp to port 80 divert-to 8000\n", anchor="fleet")
    old_pid = host.sh("cat /var/run/twinconsumer.pid").stdout.strip()
    host.twinctl("reboot", "--host", "fbsd")
    st = host.call(op="state")
    assert "ipdivert" in st["modules"] and "pf" in st["modules"] and st["pf_enabled"]
    assert st["anchors"] == [] and st["live_ports"] == []          # anchors empty after reboot
    host.wait_sockets(8000, 3)                                       # consumer started at boot
    assert host.sh("cat /var/run/twinconsumer.pid").stdout.strip() != old_pid
    assert not os.path.exists("/proc/%s" % old_pid) or "Z" in open("/proc/%s/status" % old_pid).read()
    assert 'anchor "fleet" all' in host.sh("pfctl -s rules").stdout   # /etc/pf.conf loaded


def test_rcorder_honours_require_and_before(host):
    host.write("/usr/local/etc/rc.d/aaa", "#!/bin/sh\n# PROVIDE: aaa\n# REQUIRE: zzz\n")
    host.write("/usr/local/etc/rc.d/zzz", "#!/bin/sh\n# PROVIDE: zzz\n")
    host.write("/usr/local/etc/rc.d/mmm", "#!/bin/sh\n# PROVIDE: mmm\n# BEFORE: zzz\n")
    out = host.sh("rcorder /usr/local/etc/rc.d/aaa /usr/local/etc/rc.d/mmm /usr/local/etc/rc.d/zzz").stdout.split()
    assert [os.path.basename(x) for x in out] == ["mmm", "zzz", "aaa"]


def test_kld_texts(host):
    assert host.sh("kldstat -q -m ipdivert").returncode == 1
    assert host.sh("kldload ipdivert").returncode == 0
    r = host.sh("kldload ipdivert")
    assert r.returncode == 1 and r.stderr == "kldload: can't load ipdivert: module already loaded or in kernel\n"
    assert host.sh("kldload -n ipdivert").returncode == 0
    assert "ipdivert.ko" in host.sh("kldstat").stdout
    assert host.sh("sysctl -n kern.ostype").stdout == "FreeBSD\n"
    r = host.sh("sysctl net.inet.nosuch")
    assert r.returncode == 1 and r.stderr == "sysctl: unknown oid 'net.inet.nosuch'\n"


def test_fault_bind_only_k(host):
    host.twinctl("fault", "--host", "fbsd", "--service", "twinconsumer", "--bind-only", "2")
    divert_setup(host, 2)
    host.sh("service twinconsumer stop", check=True)
    host.wait_sockets(8000, 0)
    host.sh("sysrc -q twinconsumer_sockets=5 && service twinconsumer start", check=True)
    host.wait_sockets(8000, 2)
    log = host.sh("cat /var/run/twinconsumer.log").stdout
    host.twinctl("fault", "--host", "fbsd", "--service", "twinconsumer", "--clear")


def test_fault_die_after(host):
    host.twinctl("fault", "--host", "fbsd", "--service", "twinconsumer", "--die-after", "0.2")
    divert_setup(host, 2)
    host.wait_sockets(8000, 0)       # the consumer dies; its sockets close with it
    host.twinctl("fault", "--host", "fbsd", "--service", "twinconsumer", "--clear")


def test_ansible_copy_lands_in_twin_host(host, tmp_path):
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    if not os.path.exists(ansible):
        pytest.skip("ansible not installed beside this Python")
    inv = tmp_path / "inv.yml"
    inv.write_text(host.twinctl("inventory").stdout)
    r = subprocess.run([ansible, "fbsd", "-i", str(inv), "-m", "ansible.builtin.copy",
                        "-a", "dest=/usr/local/etc/rc.d/x content='#!/bin/sh\n' mode=0755"],
                       capture_output=True, text=True, env=dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="0"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(os.path.join(host.dir, "fs", "local.up", "etc", "rc.d", "x"))
    assert not os.path.exists("/usr/local/etc/rc.d/x")
    r = subprocess.run([ansible, "fbsd", "-i", str(inv), "-m", "ansible.builtin.setup", "-a", "filter=ansible_system"],
                       capture_output=True, text=True)
    assert '"ansible_system": "FreeBSD"' in r.stdout, r.stdout + r.stderr
