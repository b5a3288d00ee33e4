"""The OPNsense flavour's configuration layer: /conf/config.xml with the IDS model, the
template that turns it into /etc/rc.conf.d/suricata, and configd's `ids` actions.

Written from opnsense/core (f95e8151, 2026-08):
- models/OPNsense/IDS/IDS.xml (version 1.1.2): `general` has `enabled` (BooleanField, default
  0), `mode` (pcap | netmap | divert, default pcap), `divert_listeners` (1..256, default 1),
  `interfaces` (default wan), `verbosity`, ... (the `ips` field of 1.1.1 is gone: migration
  M1_1_2 turned ips=1 into mode netmap);
- service/templates/OPNsense/IDS/+TARGETS: `rc.conf.d` is written to /etc/rc.conf.d/suricata;
  the template (rc.conf.d, rendered with trim_blocks) writes, when `enabled` is not empty or
  "0" (template_helpers.empty): suricata_setup, suricata_enable="YES", suricata_flags="-D",
  the verbosity flag, then per mode: netmap `suricata_netmap="YES"`; divert
  `suricata_divertport="8000"` (fixed) and `suricata_flags="${suricata_flags} " + one
  `-d 8000` per listener after the first; pcap `suricata_interface="IF ..."`; when disabled
  only `suricata_enable="NO"`;
- service/conf/actions.d/actions_ids.conf: start, stop, restart, status run
  /usr/local/etc/rc.d/suricata with that word (status: its output, errors ignored); reload is
  `installRules.py && pkill -USR2 suricata`;
- service/modules/actions/script.py: a script action answers "OK", or "Error (N)" with its
  exit status N; configctl prints the answer and exits 0 either way (configd_ctl.py).
"""
import os
import re
import signal
import subprocess
from xml.etree import ElementTree

CONFIG = "/conf/config.xml"
RC_CONF_D = "/etc/rc.conf.d/suricata"
SURICATA_YAML = "/usr/local/etc/suricata/suricata.yaml"
INSTALLED_RULES = "/usr/local/etc/suricata/installed_rules.yaml"
RC_SCRIPT = "/usr/local/etc/rc.d/suricata"
SETUP = "/usr/local/opnsense/scripts/suricata/setup.sh"
RC_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"

# A fresh OPNsense's configuration, as far as the twin reads it: interfaces and the IDS model's
# general section with its defaults (IDS.xml).
DEFAULT_CONFIG = """<?xml version="1.0"?>
<opnsense>
  <system>
    <hostname>%(hostname)s</hostname>
    <domain>localdomain</domain>
  </system>
  <interfaces>
    <wan>
      <if>vtnet0</if>
      <enable>1</enable>
    </wan>
    <lan>
      <if>vtnet1</if>
      <enable>1</enable>
    </lan>
  </interfaces>
  <OPNsense>
    <IDS version="1.1.2">
      <rules/>
      <policies/>
      <userDefinedRules/>
      <files/>
      <fileTags/>
      <general>
        <enabled>0</enabled>
        <mode>pcap</mode>
        <divert_listeners>1</divert_listeners>
        <promisc>0</promisc>
        <interfaces>wan</interfaces>
        <homenet>192.168.0.0/16,10.0.0.0/8,172.16.0.0/12</homenet>
        <defaultPacketSize/>
        <UpdateCron/>
        <AlertLogrotate>W0D23</AlertLogrotate>
        <AlertSaveLogs>4</AlertSaveLogs>
        <MPMAlgo/>
        <detect>
          <Profile/>
          <toclient_groups/>
          <toserver_groups/>
        </detect>
        <syslog>0</syslog>
        <syslog_eve>0</syslog_eve>
        <LogPayload>0</LogPayload>
        <verbosity/>
      </general>
    </IDS>
  </OPNsense>
</opnsense>
"""


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def config():
    text = _read(CONFIG)
    if text is None:
        raise ValueError("%s is missing" % CONFIG)
    return ElementTree.fromstring(text)


def _value(root, path):
    node = root.find(path)
    return (node.text or "").strip() if node is not None else None


def _empty(value):
    """template_helpers.empty: missing, empty or "0"."""
    return value is None or value.strip() in ("", "0")


def physical_interface(root, name):
    return _value(root, "interfaces/%s/if" % name) or name


def ids_rc_conf(root):
    """/etc/rc.conf.d/suricata as OPNsense's template OPNsense/IDS/rc.conf.d renders it."""
    general = "OPNsense/IDS/general/"
    if _empty(_value(root, general + "enabled")):
        return 'suricata_enable="NO"\n'
    lines = ['suricata_setup="%s"' % SETUP, 'suricata_enable="YES"', 'suricata_flags="-D"']
    verbosity = _value(root, general + "verbosity")
    if not _empty(verbosity):
        lines.append('suricata_flags="${suricata_flags} -%s"' % verbosity)
    mode = _value(root, general + "mode") or ""
    if mode == "netmap":
        lines += ["# IPS mode, switch to netmap", 'suricata_netmap="YES"']
    elif mode == "divert":
        listeners = int(_value(root, general + "divert_listeners") or "1")
        lines += ["# IPS mode, divert sockets", 'suricata_divertport="8000"',
                  'suricata_flags="${suricata_flags} %s"' % " ".join(["-d 8000"] * (listeners - 1))]
    else:
        names = (_value(root, general + "interfaces") or "").split(",")
        lines += ["# IDS mode, pcap live mode",
                  'suricata_interface="%s"' % " ".join(physical_interface(root, n) for n in names)]
    return "\n".join(lines) + "\n"


def template_reload(name):
    """configctl template reload NAME ('*' or 'OPNsense/IDS' are the ones the twin has)."""
    if name not in ("*", "OPNsense/IDS", "OPNsense/IDS/*"):
        return "OK"
    root = config()
    _write(RC_CONF_D, ids_rc_conf(root))
    mode = _value(root, "OPNsense/IDS/general/mode") or "pcap"
    _write(SURICATA_YAML, "%%YAML 1.1\n---\n# generated by the twin's template OPNsense/IDS (mode %s)\n"
           "default-rule-path: /usr/local/etc/suricata/opnsense.rules\nrule-files:\n"
           "  - installed_rules.yaml\n" % mode)
    return "OK"


def _in_this_host(pid, mine):
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid) == mine
    except OSError:
        return False


def pkill(sig, pattern):
    """pkill -SIG PATTERN on this host: the processes whose name matches (FreeBSD: p_comm); the
    twin's hosts share the build machine's process table, so only this host's are taken (its
    own mount namespace). 0 when one was signalled, 1 when none matched (pkill(1))."""
    mine = os.readlink("/proc/self/ns/mnt")
    hit = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        comm = (_read("/proc/%d/comm" % pid) or "").strip()
        if not re.search(pattern, comm) or not _in_this_host(pid, mine):
            continue
        try:
            os.kill(pid, sig)
            hit = True
        except OSError:
            pass
    return 0 if hit else 1


def _script(argv):
    env = {"PATH": RC_PATH, "HOME": "/"}
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True)


def ids(action):
    """configctl ids ACTION: (answer, output) as configd gives them."""
    if action in ("start", "stop", "restart"):
        proc = _script([RC_SCRIPT, action])
        return "OK" if proc.returncode == 0 else "Error (%d)" % proc.returncode
    if action == "status":
        return _script([RC_SCRIPT, "status"]).stdout.rstrip("\n")
    if action == "reload":
        # installRules.py writes the rule files the policy selects; then every suricata process
        # of the host gets SIGUSR2 (rules reloaded, sockets kept)
        _write(INSTALLED_RULES, "%YAML 1.1\n---\nrule-files: []\n")
        rc = pkill(signal.SIGUSR2, "suricata")
        return "OK" if rc == 0 else "Error (%d)" % rc
    return "Action not found"
