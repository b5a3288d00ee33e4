"""Suricata as FreeBSD ports and OPNsense ship it (freebsd-facts.md: "Suricata in divert mode",
"OPNsense"): the ports' rc.d script, the stand-in's start order, listeners, SO_REUSEPORT_LB,
SIGUSR2, and OPNsense's IDS model, template and configd actions."""
import json
import os
import re
import sys

from twin_fixtures import CHECKOUT, wait_until

PORTS_ARGV = ["-D", "-d", "8000", "--pidfile", "/var/run/suricata.pid", "-c", "/usr/local/etc/suricata/suricata.yaml"]


def stats(h, instance="suricata"):
    text = h.sh("cat /var/run/suricata-twin/%s.json" % instance).stdout
    return json.loads(text) if text else {}


def knobs(h, *args):
    h.twinctl("suricata", "--host", h.name, *args)


def test_ports_rc_script_runs_suricata_with_the_ports_command_line(host):
    """security/suricata/files/suricata.in: `-D` (suricata_flags), `-d $suricata_divertport` in divert
    mode, `--pidfile /var/run/suricata.pid`, `-c $suricata_conf`."""
    knobs(host, "--load-seconds", "0.2")
    host.sh("kldload ipdivert && sysrc -q suricata_enable=YES", check=True)
    assert host.sh("service suricata start").returncode == 0
    host.wait_sockets(8000, 1)
    assert stats(host)["argv"] == PORTS_ARGV and stats(host)["state"] == "running"
    status = host.sh("service suricata status").stdout
    assert status == "suricata is running as pid %d.\n" % stats(host)["pid"]
    assert host.sh("service suricata stop").returncode == 0
    host.wait_sockets(8000, 0)
    assert host.sh("test -e /var/run/suricata.pid").returncode == 1      # removed at a clean stop


def test_fact_suricata_start_returns_before_any_socket_is_bound(host):
    """fact: with -D Suricata daemonises (MayDaemonize) before it loads its rules and its capture
    threads bind: `service suricata start` has returned while the kernel shows no socket."""
    knobs(host, "--load-seconds", "30")
    host.sh("kldload ipdivert && sysrc -q suricata_enable=YES", check=True)
    assert host.sh("service suricata start").returncode == 0
    assert stats(host)["state"] == "loading"
    assert host.call(op="state")["groups"] == {}
    assert "is running as pid" in host.sh("service suricata status").stdout
    assert host.sh("service suricata stop").returncode == 0            # SIGTERM while loading
    assert stats(host)["state"] == "stopped"


def test_fact_upstream_suricata_fails_on_a_second_listener_of_one_port(host):
    """fact: upstream Suricata does not set SO_REUSEPORT_LB: the second `-d` on one port fails with
    EADDRINUSE, the engine aborts (exit 1, FatalError), its sockets close and its pid file stays, so
    the next start refuses ("appears stale")."""
    knobs(host, "--load-seconds", "0.2")
    host.sh("kldload ipdivert && sysrc -q suricata_enable=YES suricata_flags='-D -d 8000'", check=True)
    assert host.sh("service suricata start").returncode == 0           # returned before the bind
    wait_until(lambda: stats(host).get("state") == "failed", what="the bind to fail")
    log = host.sh("cat /var/log/suricata/suricata.log").stdout
    assert "Can't bind divert socket on port 8000: Address already in use" in log
    wait_until(lambda: host.sh("service suricata status").returncode == 1, what="the process to exit")
    assert host.call(op="wait_sockets", port=8000, count=0, timeout=5)["ok"]
    again = host.sh("service suricata start")
    assert again.returncode == 1 and "exists but appears stale" in again.stderr


def test_suricata_built_with_the_lb_patch_binds_every_listener(host):
    """opnsense/ports patch-src_source-ipfw.c: SO_REUSEPORT_LB on each divert socket before bind (the
    twin's FreeBSD knob `--lb-patch on`)."""
    knobs(host, "--load-seconds", "0.2", "--lb-patch", "on")
    host.sh("kldload ipdivert && sysrc -q suricata_enable=YES suricata_flags='-D -d 8000 -d 8000'", check=True)
    assert host.sh("service suricata start").returncode == 0
    host.wait_sockets(8000, 3)
    assert stats(host)["lb"] is True and stats(host)["bound"] == 3
    assert host.sh("sockstat -4 -P divert -p 8000 -q").stdout.count("suricata") == 3


def test_fact_one_suricata_takes_at_most_16_listeners(host):
    """fact: IPFW_MAX_QUEUE 16: the 17th `-d` is refused while the command line is parsed, before
    Suricata daemonises, so the start itself fails."""
    knobs(host, "--lb-patch", "on")
    flags = "-D" + " -d 8000" * 16      # the rc.d script adds the 17th
    host.sh("kldload ipdivert && sysrc -q suricata_enable=YES suricata_flags='%s'" % flags, check=True)
    r = host.sh("service suricata start")
    assert r.returncode == 1 and "too much IPFW divert port registered (16)" in r.stderr
    assert host.sh("service suricata status").returncode == 1


def test_fact_sigusr2_reloads_rules_without_rebinding(host):
    """fact: SIGUSR2 reloads the rules (DetectEngineReload) while every socket stays bound: the same
    process, the same sockets in the same slots, a flow stays on its socket."""
    knobs(host, "--load-seconds", "0.2", "--lb-patch", "on")
    host.sh("kldload ipdivert pf && pfctl -e && sysrc -q suricata_enable=YES suricata_flags='-D -d 8000 -d 8000'",
            check=True)
    host.sh("service suricata start", check=True)
    host.wait_sockets(8000, 3)
    host.pf_load("pass in quick proto tcp to port 80 keep state divert-to 8000\n")
    before = host.call(op="state")["slots"]
    flow = host.flow(packets=1, end=False, name="kept")
    pid = stats(host)["pid"]
    host.sh("service suricata onestatus >/dev/null && kill -USR2 %d" % pid, check=True)
    wait_until(lambda: stats(host)["reloads"] == 1, what="the reload")
    assert host.call(op="state")["slots"] == before and stats(host)["pid"] == pid
    assert host.more("kept", packets=2, end=True)["sock"] == flow["sock"]
    rep = host.report()
    assert rep["flows_remapped"] == 0 and rep["dropped_noport"] == 0 and rep["swallowed"] == 0


def test_suricata_runs_from_the_collections_standby_rc_script(host):
    """The collection's standby instance (`_host_drivers.suricata_standby_rc_script`): the port's binary
    with `-c CONF -d PORT --pidfile /var/run/NAME.pid` after its flags, beside the primary instance."""
    sys.path.insert(0, os.path.join(CHECKOUT, ".venv", "collections"))
    from ansible_collections.divert.fleet.plugins.module_utils._host_drivers import suricata_standby_rc_script
    knobs(host, "--load-seconds", "0.2", "--lb-patch", "on")
    host.write("/usr/local/etc/rc.d/suricata_standby", suricata_standby_rc_script("suricata_standby"))
    host.sh("chmod 755 /usr/local/etc/rc.d/suricata_standby && sysrc -q suricata_enable=YES "
            "suricata_standby_enable=YES suricata_standby_divertport=8001 suricata_standby_flags='-D -d 8001'",
            check=True)
    assert host.sh("service suricata start && service suricata_standby start").returncode == 0
    host.wait_sockets(8000, 1)
    host.wait_sockets(8001, 2)
    standby = stats(host, "suricata_standby")
    assert standby["argv"] == ["-D", "-d", "8001", "-c", "/usr/local/etc/suricata/suricata.yaml", "-d", "8001",
                               "--pidfile", "/var/run/suricata_standby.pid"]
    assert host.sh("service suricata_standby reload").returncode == 0    # sig_reload=USR2
    wait_until(lambda: stats(host, "suricata_standby")["reloads"] == 1, what="the standby's reload")
    assert host.sh("service suricata_standby stop").returncode == 0
    host.wait_sockets(8001, 0)
    assert stats(host)["state"] == "running"


# ---- OPNsense's own Suricata: the IDS model, its template and configd's actions -----------------
def set_ids(h, enabled, mode, listeners):
    """Edit OPNsense's IDS model in /conf/config.xml (what the GUI or the API would save)."""
    xml = h.sh("cat /conf/config.xml").stdout
    head, general = xml.split("<general>", 1)
    general, tail = general.split("</general>", 1)
    for name, value in (("enabled", enabled), ("mode", mode), ("divert_listeners", listeners)):
        general = re.sub(r"<%s>[^<]*</%s>" % (name, name), "<%s>%s</%s>" % (name, value, name), general)
    h.write("/conf/config.xml", head + "<general>" + general + "</general>" + tail)


def test_opnsense_config_has_the_ids_model_with_its_defaults(opn):
    """models/OPNsense/IDS/IDS.xml 1.1.2: general.enabled 0, mode pcap, divert_listeners 1; no `ips` field."""
    xml = opn.sh("cat /conf/config.xml").stdout
    general = xml[xml.index("<general>"):xml.index("</general>")]
    assert "<enabled>0</enabled>" in general and "<mode>pcap</mode>" in general
    assert "<divert_listeners>1</divert_listeners>" in general and "<ips>" not in general
    assert '<IDS version="1.1.2">' in xml


def test_opnsense_template_writes_rc_conf_d_suricata_as_opnsense_does(opn):
    """templates/OPNsense/IDS/rc.conf.d -> /etc/rc.conf.d/suricata (+TARGETS): port 8000 fixed, one
    `-d 8000` per listener after the first in suricata_flags; disabled: suricata_enable="NO"."""
    assert opn.sh("configctl template reload OPNsense/IDS").stdout == "OK\n"
    assert opn.sh("cat /etc/rc.conf.d/suricata").stdout == 'suricata_enable="NO"\n'
    set_ids(opn, 1, "divert", 3)
    opn.sh("configctl template reload OPNsense/IDS", check=True)
    assert opn.sh("cat /etc/rc.conf.d/suricata").stdout == (
        'suricata_setup="/usr/local/opnsense/scripts/suricata/setup.sh"\nsuricata_enable="YES"\n'
        'suricata_flags="-D"\n# IPS mode, divert sockets\nsuricata_divertport="8000"\n'
        'suricata_flags="${suricata_flags} -d 8000 -d 8000"\n')
    set_ids(opn, 1, "divert", 1)
    opn.sh("configctl template reload OPNsense/IDS", check=True)
    assert opn.sh("tail -n 1 /etc/rc.conf.d/suricata").stdout == 'suricata_flags="${suricata_flags} "\n'
    set_ids(opn, 1, "pcap", 1)
    opn.sh("configctl template reload OPNsense/IDS", check=True)
    assert opn.sh("tail -n 1 /etc/rc.conf.d/suricata").stdout == 'suricata_interface="vtnet0"\n'


def test_opnsense_configctl_ids_actions(opn):
    """actions_ids.conf: start/stop/restart run rc.d/suricata (answer OK or "Error (N)"), status prints
    rc.subr's line, reload is SIGUSR2 to every suricata process (no rebind); configctl exits 0."""
    knobs(opn, "--load-seconds", "0.2")
    set_ids(opn, 1, "divert", 4)
    opn.sh("configctl template reload OPNsense/IDS", check=True)
    assert opn.sh("configctl ids status").stdout == "suricata is not running.\n"
    r = opn.sh("configctl ids reload")
    assert r.returncode == 0 and r.stdout == "Error (1)\n"                  # pkill: no process matched
    assert opn.sh("configctl ids start").stdout == "OK\n"
    opn.wait_sockets(8000, 4)                                              # setup.sh loaded ipdivert
    first = stats(opn)
    assert first["lb"] is True and first["argv"][:9] == ["-D", "-d", "8000", "-d", "8000", "-d", "8000", "-d", "8000"]
    assert opn.sh("configctl ids status").stdout == "suricata is running as pid %d.\n" % first["pid"]
    slots = opn.call(op="state")["slots"]
    assert opn.sh("configctl ids reload").stdout == "OK\n"
    wait_until(lambda: stats(opn)["reloads"] == 1, what="the rule reload")
    assert opn.call(op="state")["slots"] == slots and stats(opn)["pid"] == first["pid"]
    assert opn.sh("configctl ids restart").stdout == "OK\n"
    assert stats(opn)["pid"] != first["pid"]
    opn.wait_sockets(8000, 4)
    assert opn.sh("configctl ids stop").stdout == "OK\n"
    opn.wait_sockets(8000, 0)
    assert opn.sh("configctl ids nosuch").stdout == "Action not found\n"


def test_opnsense_boot_regenerates_the_ids_template_and_starts_suricata(opn):
    """fact: `rc.syshook early` regenerates every template (15-templates) before the filter and the
    services: /etc/rc.conf.d/suricata follows config.xml at boot, rc.freebsd starts Suricata (its rcvar
    YES there), its suricata_setup loads ipdivert; /etc/rc.conf is not read for it."""
    knobs(opn, "--load-seconds", "0.2")
    set_ids(opn, 1, "divert", 2)
    opn.write("/etc/rc.conf.d/suricata", 'suricata_enable="NO"\n')          # stale: the model wins
    opn.twinctl("reboot", "--host", "opn")
    opn.wait_sockets(8000, 2)
    assert "-d 8000\"" in opn.sh("cat /etc/rc.conf.d/suricata").stdout
    assert "ipdivert" in opn.call(op="state")["modules"]
    assert "suricata" not in opn.sh("cat /etc/rc.conf").stdout
