# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How each kind of consumer is run on a host: one driver per kind, behind one interface.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).

A consumer runs as one or two *instances*: the primary on the spec's `port`, and, for the
drivers that can run a second copy (`standby`), a standby instance on `standby_port`, so
that a group can be rebuilt beside the one that serves (I5). Every driver answers the same
questions (`Driver`):

- `instance_service(consumer, port)`: the rc.d service that runs the instance on `port`;
- `settings(consumer, port)`: what the instance on `port` is configured with (rc.conf
  variables, or OPNsense's IDS model values), as data that a change is measured against;
- `configure` / `unconfigure`: write or remove those settings (returns what changed);
- `start`, `stop`, `reload`, `running`: the instance's service;
- `program`: the files whose change needs a restart because the program itself changed.

Facts (freebsd-facts.md): ports' Suricata reads `suricata_divertport` and takes further
listeners as `-d PORT` in `suricata_flags`, at most 16 per process; `service suricata start`
returns before any socket is bound; Suricata reloads rules on SIGUSR2 without rebinding.
OPNsense's own Suricata is configured through its IDS model (`OPNsense.IDS.general`:
`enabled`, `mode`, `divert_listeners`), applied with `configctl template reload OPNsense/IDS`
and `configctl ids restart`; `configctl ids reload` reloads rules only; its port is 8000.
OPNsense's rc.freebsd starts rc.d scripts whose rcvar is YES, reading /etc/rc.conf.d/NAME.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import sys
import time
from xml.etree import ElementTree

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import rc_conf_d_values
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    RC_D, REFLECTOR_PATH, HostError, sysrc_values)

RC_CONF_D = "/etc/rc.conf.d"
OPNSENSE_CONFIG = "/conf/config.xml"
OPNSENSE_BACKUPS = "/conf/backup"
OPNSENSE_IDS_PORT = 8000  # OPNsense's IDS divert port is fixed (its template writes 8000)
SURICATA = "/usr/local/bin/suricata"
SURICATA_MAX_LISTENERS = 16  # IPFW_MAX_QUEUE in Suricata's source-ipfw.c
STANDBY_SUFFIX = "_standby"
_SIGNALS = ("SIGHUP", "SIGUSR1", "SIGUSR2")


def fill(value, port, sockets):
    """`@PORT@` and `@SOCKETS@` in a spec value, for the instance on `port`."""
    return str(value).replace("@PORT@", str(port)).replace("@SOCKETS@", str(sockets))


class Driver:
    """The generic rc.d driver (`driver: rc`): any service, configured by rc.conf variables."""

    name = "rc"
    standby = False  # can a second instance run beside the first?
    default_reload = None  # how a running instance takes a reload-only change

    def __init__(self, host, platform):
        self.host = host
        self.platform = platform

    # --- what an instance is -------------------------------------------------------------
    def instance_service(self, consumer, port):
        if port == consumer["port"] or not self.standby:
            return consumer["service"]
        return consumer["service"] + STANDBY_SUFFIX

    def reload_method(self, consumer):
        return consumer.get("reload") or self.default_reload

    def settings(self, consumer, port):
        """rc.conf variables of the instance on `port`: the spec's (with @PORT@/@SOCKETS@ for this
        instance), and SERVICE_enable."""
        service = self.instance_service(consumer, port)
        template = consumer.get("rc_vars_template") or consumer.get("rc_vars") or {}
        wanted = dict((str(k), fill(v, port, consumer["sockets"])) for k, v in template.items())
        if service != consumer["service"]:  # a standby instance has variables of its own name
            prefix = consumer["service"] + "_"
            wanted = dict((service + "_" + k[len(prefix):] if k.startswith(prefix) else k, v)
                          for k, v in wanted.items())
        wanted["%s_enable" % service] = "YES"
        return wanted

    def program(self, consumer):
        """Files whose content is the program: a change restarts the group."""
        return []

    # --- where rc.conf variables live ----------------------------------------------------
    def _rc_file(self, service):
        # OPNsense's rc.freebsd reads /etc/rc.conf.d/NAME; /etc/rc.conf is FreeBSD's place.
        return "%s/%s" % (RC_CONF_D, service) if self.platform == "opnsense" else None

    def current(self, consumer, port, names, rc_conf=None):
        """The instance's current settings among `names`. `rc_conf`: values of /etc/rc.conf read
        once for every consumer (FreeBSD), so a run that changes nothing costs one command."""
        rc_file = self._rc_file(self.instance_service(consumer, port))
        if rc_file:
            return rc_conf_d_values(self.host, rc_file, names)
        if rc_conf is not None:
            return dict((name, rc_conf[name]) for name in names if name in rc_conf)
        return sysrc_values(self.host, names)

    def configure(self, consumer, port, wanted, current, check_mode):
        """Write the variables that differ; returns {var: (before, after)}."""
        service = self.instance_service(consumer, port)
        changes = dict((var, (current.get(var), value)) for var, value in sorted(wanted.items())
                       if current.get(var) != value)
        if changes and not check_mode:
            self._sysrc(service, ["%s=%s" % (var, after) for var, (_before, after) in sorted(changes.items())],
                        "setting rc.conf variables of %s" % service)
        return changes

    def unconfigure(self, consumer, port, names, check_mode):
        """Remove variables the collection set for this instance (never others)."""
        service = self.instance_service(consumer, port)
        if names and not check_mode:
            self._sysrc(service, ["-x"] + sorted(names), "removing rc.conf variables of %s" % service)
        return sorted(names)

    def _sysrc(self, service, args, what):
        rc_file = self._rc_file(service)
        argv = ["sysrc"] + (["-f", rc_file] if rc_file else []) + args
        self.host.run_ok(argv, what)

    # --- the service -----------------------------------------------------------------------
    def running(self, consumer, port):
        return self.host.run(["service", self.instance_service(consumer, port), "onestatus"])[0] == 0

    def start(self, consumer, port):
        service = self.instance_service(consumer, port)
        self.host.run_ok(["service", service, "start"], "start of service %s" % service)

    def stop(self, consumer, port):
        service = self.instance_service(consumer, port)
        self.host.run_ok(["service", service, "onestop"], "stop of service %s" % service)

    def restart(self, consumer, port):
        service = self.instance_service(consumer, port)
        self.host.run_ok(["service", service, "restart"], "restart of service %s" % service)

    def reload(self, consumer, port):
        """Take a reload-only change without rebinding: `service NAME reload`, or a signal."""
        service = self.instance_service(consumer, port)
        method = self.reload_method(consumer)
        if method in (None, "rc"):
            self.host.run_ok(["service", service, "reload"], "reload of service %s" % service)
            return
        rc, out, err = self.host.run(["service", service, "onestatus"])
        match = re.search(r"is running as pid (\d+)", out)
        if rc != 0 or not match:
            raise HostError("reload of service %s failed on %s: it is not running (%s)"
                            % (service, self.host.name, (out or err).strip()))
        self.host.run_ok(["kill", "-%s" % method[3:], match.group(1)], "%s to service %s" % (method, service))

    # --- files the driver installs -----------------------------------------------------------
    def expected_files(self, consumer, port, reference_program=None):
        """{path: content} of the files the instance on `port` runs from that the collection
        installs (programs, rc.d scripts): a change of any of them restarts the group."""
        return {}

    def install(self, consumer, port, check_mode, reference_program=None):
        """Write `expected_files`; returns the paths that changed."""
        changed = []
        for path, content in sorted(self.expected_files(consumer, port, reference_program).items()):
            if self.host.ensure_file(path, content, 0o755, check_mode):
                changed.append(path)
        return changed

    def uninstall(self, consumer, port, check_mode):
        """Remove the instance's own rc.d script (never a shared program or another's script)."""
        removed = []
        for path in sorted(self.expected_files(consumer, port, "")):
            if path.startswith(RC_D + "/") and self.host.remove_file(path, check_mode):
                removed.append(path)
        return removed


class ReflectorDriver(Driver):
    """The collection's reference consumer (`driver: reflector`, or `reference: true`): our
    program, our rc.d script per instance, so a standby instance is always possible."""

    name = "reflector"
    standby = True
    default_reload = "SIGUSR2"

    def settings(self, consumer, port):
        service = self.instance_service(consumer, port)
        wanted = Driver.settings(self, consumer, port)
        wanted.setdefault("%s_port" % service, str(port))
        wanted.setdefault("%s_sockets" % service, str(consumer["sockets"]))
        wanted.setdefault("%s_user" % service, "nobody")
        return wanted

    def expected_files(self, consumer, port, reference_program=None):
        if reference_program is None:
            raise HostError("reference consumers need reference_program (the divert-reflector source)")
        service = self.instance_service(consumer, port)
        files = {_host_guard.owned_path(RC_D, service): reflector_rc_script(service)}
        if reference_program:
            files[REFLECTOR_PATH] = reference_program
        return files


class SuricataDriver(Driver):
    """Suricata from FreeBSD's ports (`driver: suricata`): the port's rc.d script for the
    primary instance (`suricata_divertport` and one `-d PORT` per further listener in
    `suricata_flags`), and a script of the collection's for the standby instance."""

    name = "suricata"
    standby = True
    default_reload = "SIGUSR2"

    def settings(self, consumer, port):
        service = self.instance_service(consumer, port)
        template = dict(consumer.get("rc_vars_template") or consumer.get("rc_vars") or {})
        flags_var = "%s_flags" % consumer["service"]
        user_flags = fill(template.pop(flags_var, "-D"), port, consumer["sockets"])
        wanted = Driver.settings(self, dict(consumer, rc_vars_template=template, rc_vars=template), port)
        further = " ".join(["-d %d" % port] * (consumer["sockets"] - 1))
        wanted["%s_divertport" % service] = str(port)
        wanted["%s_flags" % service] = (user_flags + " " + further).strip()
        return wanted

    def program(self, consumer):
        return [SURICATA]

    def expected_files(self, consumer, port, reference_program=None):
        service = self.instance_service(consumer, port)
        if service == consumer["service"]:
            return {}  # the port's own script
        return {_host_guard.owned_path(RC_D, service): suricata_standby_rc_script(service)}


class OpnsenseIdsDriver(Driver):
    """OPNsense's own Suricata (`driver: opnsense-ids`), configured through OPNsense's IDS model
    in /conf/config.xml, so that it shows in the GUI, in backups and in HA sync, and applied with
    OPNsense's own steps. Port 8000 only, one instance."""

    name = "opnsense-ids"
    standby = False
    default_reload = "configctl"
    service_name = "suricata"

    def instance_service(self, consumer, port):
        return self.service_name

    def settings(self, consumer, port):
        # OPNsense.IDS.general as of model 1.1.2 (26.1): `mode` replaced the `ips` flag (migration
        # M1_1_2), which the model no longer has and OPNsense would drop at its next save
        return {"enabled": "1", "mode": "divert", "divert_listeners": str(consumer["sockets"])}

    def program(self, consumer):
        return [SURICATA]

    def current(self, consumer, port, names, rc_conf=None):
        root = self._config()
        general = root.find("OPNsense/IDS/general") if root is not None else None
        values = {}
        if general is not None:
            for name in names:
                node = general.find(name)
                if node is not None and node.text is not None:
                    values[name] = node.text.strip()
        return values

    def _config(self):
        text = self.host.read_file(OPNSENSE_CONFIG)
        if text is None:
            raise HostError("%s is missing on %s: is this OPNsense?" % (OPNSENSE_CONFIG, self.host.name))
        try:
            return ElementTree.fromstring(text)
        except ElementTree.ParseError as exc:
            raise HostError("%s on %s is not XML (%s): nothing was changed" % (OPNSENSE_CONFIG, self.host.name, exc))

    def configure(self, consumer, port, wanted, current, check_mode):
        changes = dict((var, (current.get(var), value)) for var, value in sorted(wanted.items())
                       if current.get(var) != value)
        if changes and not check_mode:
            root = self._config()
            node = root
            for part in ("OPNsense", "IDS", "general"):
                child = node.find(part)
                if child is None:
                    child = ElementTree.SubElement(node, part)
                node = child
            for var, (_before, after) in changes.items():
                element = node.find(var)
                if element is None:
                    element = ElementTree.SubElement(node, var)
                element.text = after
            self._write_config(root)
            self.host.run_ok(["configctl", "template", "reload", "OPNsense/IDS"],
                             "regenerating OPNsense's IDS templates")
        return changes

    def _write_config(self, root):
        """config.xml written atomically, the previous one kept in /conf/backup as OPNsense does."""
        previous = self.host.read_file(OPNSENSE_CONFIG)
        self.host.write_file("%s/config-%d.xml" % (OPNSENSE_BACKUPS, int(time.time())), previous, 0o640)
        text = ElementTree.tostring(root, encoding="unicode")
        self.host.write_file(OPNSENSE_CONFIG, '<?xml version="1.0"?>\n' + text + "\n", 0o640)

    def unconfigure(self, consumer, port, names, check_mode):
        # Retiring OPNsense's IDS turns it off in its own model; the model keeps its other settings.
        if not check_mode:
            self.configure(consumer, port, {"enabled": "0"}, self.current(consumer, port, ["enabled"]), check_mode)
        return ["enabled"]

    def running(self, consumer, port):
        rc, out, _err = self.host.run(["configctl", "ids", "status"])
        return rc == 0 and "is running" in out

    def start(self, consumer, port):
        self.host.run_ok(["configctl", "ids", "start"], "start of OPNsense's IDS")

    def stop(self, consumer, port):
        self.host.run_ok(["configctl", "ids", "stop"], "stop of OPNsense's IDS")

    def restart(self, consumer, port):
        self.host.run_ok(["configctl", "ids", "restart"], "restart of OPNsense's IDS")

    def reload(self, consumer, port):
        self.host.run_ok(["configctl", "ids", "reload"], "rule reload of OPNsense's IDS")


DRIVERS = dict((cls.name, cls) for cls in (Driver, ReflectorDriver, SuricataDriver, OpnsenseIdsDriver))


def driver_name(consumer):
    if consumer.get("driver"):
        return consumer["driver"]
    return "reflector" if consumer.get("reference") else "rc"


def driver_for(host, consumer, platform):
    name = driver_name(consumer)
    if name not in DRIVERS:
        raise HostError("consumer %s: unknown driver %r (%s); nothing was changed"
                        % (consumer.get("name"), name, ", ".join(sorted(DRIVERS))))
    if name == "opnsense-ids":
        if platform != "opnsense":
            raise HostError("consumer %s uses driver opnsense-ids, OPNsense's own Suricata, but host %s is not "
                            "OPNsense; nothing was changed" % (consumer.get("name"), host.name))
        if consumer["port"] != OPNSENSE_IDS_PORT:
            raise HostError("consumer %s: OPNsense's IDS diverts on port %d only, not %d; nothing was changed"
                            % (consumer.get("name"), OPNSENSE_IDS_PORT, consumer["port"]))
    if name == "suricata" and consumer["sockets"] > SURICATA_MAX_LISTENERS:
        raise HostError("consumer %s: one Suricata process takes at most %d divert listeners, not %d; nothing "
                        "was changed" % (consumer.get("name"), SURICATA_MAX_LISTENERS, consumer["sockets"]))
    if consumer.get("standby_port") and not DRIVERS[name].standby:
        raise HostError("consumer %s: driver %s runs one instance only, so it cannot use standby_port; nothing "
                        "was changed" % (consumer.get("name"), name))
    method = consumer.get("reload")
    if method and method not in ("rc", "configctl") + _SIGNALS:
        raise HostError("consumer %s: reload %r is not rc or one of %s; nothing was changed"
                        % (consumer.get("name"), method, ", ".join(_SIGNALS)))
    return DRIVERS[name](host, platform)


# --- rc.d scripts the collection installs -------------------------------------------------------

def reflector_rc_script(service, python=None):
    """rc.d script of a reference consumer instance; reads ${name}_port, _sockets, _user, _stats.

    `python` runs the program, by default the interpreter running this code: on a managed host
    the one Ansible used there (/usr/local/bin/python3 exists only with the python3 package)."""
    return """#!/bin/sh
#
# Installed by the divert.fleet Ansible collection: the reference divert consumer
# (divert-reflector) as service %(name)s. SIGUSR2 reloads without rebinding.
#
# PROVIDE: %(name)s
# REQUIRE: NETWORKING
# KEYWORD: shutdown

. /etc/rc.subr

name="%(name)s"
rcvar="%(name)s_enable"
load_rc_config $name
: ${%(name)s_enable:="NO"}
: ${%(name)s_port:="8000"}
: ${%(name)s_sockets:="1"}
: ${%(name)s_user:="nobody"}
: ${%(name)s_stats:="/var/run/%(name)s.stats.json"}

pidfile="/var/run/${name}.pid"
command="/usr/sbin/daemon"
command_args="-f -S -T ${name} -P ${pidfile} %(python)s %(program)s --port ${%(name)s_port} \\
    --sockets ${%(name)s_sockets} --user ${%(name)s_user} --stats ${%(name)s_stats}"
required_modules="ipdivert"

run_rc_command "$1"
""" % {"name": service, "python": python or sys.executable, "program": REFLECTOR_PATH}


def suricata_standby_rc_script(service):
    """rc.d script of a standby Suricata instance: the port's binary and configuration, its own
    name, pidfile and divert listeners (${name}_divertport and -d flags in ${name}_flags)."""
    return """#!/bin/sh
#
# Installed by the divert.fleet Ansible collection: a standby instance of Suricata from ports,
# started beside the serving one while a divert group is rebuilt on another port.
#
# PROVIDE: %(name)s
# REQUIRE: DAEMON
# BEFORE: LOGIN
# KEYWORD: shutdown

. /etc/rc.subr

name="%(name)s"
rcvar="%(name)s_enable"
load_rc_config $name
: ${%(name)s_enable:="NO"}
: ${%(name)s_conf:="/usr/local/etc/suricata/suricata.yaml"}
: ${%(name)s_flags:="-D"}
: ${%(name)s_divertport:="8000"}

pidfile="/var/run/${name}.pid"
command="%(suricata)s"
command_args="-c ${%(name)s_conf} -d ${%(name)s_divertport} --pidfile ${pidfile}"
extra_commands="reload"
sig_reload="USR2"
required_modules="ipdivert"

run_rc_command "$1"
""" % {"name": service, "suricata": SURICATA}
