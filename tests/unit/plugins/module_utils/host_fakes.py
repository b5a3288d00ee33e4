# -*- coding: utf-8 -*-
"""A scripted FreeBSD for the on-host tests: commands answer with output in FreeBSD's formats.

The formats are written by hand from the FreeBSD sources that print them (named at each
fixture); nothing here calls the collection's own canonicalisers or renderers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import os
import re
import struct

from ansible_collections.divert.fleet.plugins.module_utils._host_os import FreeBSDHost

# What `render_pf` produces for a two-rule host (design.md's example line, plus a udp rule).
PF_WANTED = (
    "# divert.fleet pf anchor \"divert_fleet\" for host fw1 (backend pf, platform freebsd)\n"
    "pass in quick on igb0 inet proto tcp from any to { 10.0.0.0/8, 192.168.0.0/16 } port { 80, 443 } "
    "keep state label \"divert_fleet:inspect-web\" divert-to 8000\n"
    "pass in quick inet proto udp from any to any port 53 keep state label \"divert_fleet:classify\" divert-to 8100\n"
)
# The same rules as `pfctl -a divert_fleet -s rules` prints them (sbin/pfctl/pfctl_parser.c
# print_rule): lists expanded (proto, src, src port, dst, dst port order), `port = NAME` from
# /etc/services, default `flags S/SA` on the stateful tcp rule, none on udp.
PF_PRINTED = (
    "pass in quick on igb0 inet proto tcp from any to 10.0.0.0/8 port = http flags S/SA keep state "
    "label \"divert_fleet:inspect-web\" divert-to 8000\n"
    "pass in quick on igb0 inet proto tcp from any to 10.0.0.0/8 port = https flags S/SA keep state "
    "label \"divert_fleet:inspect-web\" divert-to 8000\n"
    "pass in quick on igb0 inet proto tcp from any to 192.168.0.0/16 port = http flags S/SA keep state "
    "label \"divert_fleet:inspect-web\" divert-to 8000\n"
    "pass in quick on igb0 inet proto tcp from any to 192.168.0.0/16 port = https flags S/SA keep state "
    "label \"divert_fleet:inspect-web\" divert-to 8000\n"
    "pass in quick inet proto udp from any to any port = domain keep state label \"divert_fleet:classify\" "
    "divert-to 8100\n"
)
PF_CHANGED = PF_WANTED.replace("port 53", "port 5353")
PF_CHANGED_PRINTED = PF_PRINTED.replace("port = domain", "port = 5353")

# `ipfw_lines` output (final form, set 5) for an ipfw host.
IPFW_WANTED = (
    "# divert.fleet ipfw rules in set 5 for host fw3 (backend ipfw, platform freebsd)\n"
    "add 10000 set 5 divert 8000 tcp from any to any in via igb0 ip4\n"
    "add 10010 set 5 divert 8000 ip4 from any to 10.0.0.0/8 in\n"
)
# `ipfw -S list` (sbin/ipfw/ipfw2.c show_static_rule: `%05u`, `set N` with -S; print_proto puts
# `ip4` in the protocol position and the O_PROTO opcode later as `proto tcp`).
IPFW_PRINTED_SET5 = (
    "10000 set 5 divert 8000 ip4 from any to any proto tcp in via igb0\n"
    "10010 set 5 divert 8000 ip4 from any to 10.0.0.0/8 in\n"
)
IPFW_DEFAULT_RULE = "65535 set 31 deny ip from any to any\n"

# `pfctl -s info` (pfctl_parser.c print_status: `Status: %s for %u days %.2u:%.2u:%.2u`, padded
# to 44 columns, then the debug level).
PF_INFO = ("Status: %s for 0 days 01:02:03           Debug: Urgent\n\n"
           "State Table                          Total             Rate\n"
           "  current entries                        4               \n")


def sockstat_json(rows):
    """`sockstat -4 -P divert --libxo json` (usr.bin/sockstat display(): container sockstat,
    list socket, keys user command pid fd proto local{address,port} foreign{address,port})."""
    sockets = []
    for port, pid, command in rows:
        item = {"proto": "div4", "local": {"address": "*", "port": port}, "foreign": {"address": "*", "port": 0}}
        if pid is not None:
            item.update({"user": "root", "command": command, "pid": pid, "fd": 3})
        sockets.append(item)
    return json.dumps({"__version": "1", "sockstat": {"socket": sockets}})


def pcblist_dump(ports, xso_len=48):
    """A net.inet.divert.pcblist buffer as `sysctl -x` prints it: xinpgen, one xinpcb per socket
    (ksize_t xi_len; struct xsocket (starting with its own ksize_t xso_len); struct in_conninfo
    {u8 inc_flags; u8 inc_len; u16 inc_fibnum; in_endpoints {u16 ie_fport; u16 ie_lport; ...}}),
    closing xinpgen; host byte order little-endian, ports network order."""
    xig = struct.pack("<QI4xQQ", 32, len(ports), 7, 9)
    records = b""
    for number, port in enumerate(ports):
        # xso_len, then xso_so: the socket's kernel address, one per socket
        xso = struct.pack("<QQ", xso_len, 0xfffff80001000000 + 0x100 * number) + b"\0" * (xso_len - 16)
        inc = struct.pack("<BBH", 0, 0, 0) + struct.pack("!HH", 0, port) + b"\0" * 40
        body = xso + inc + b"\0" * 64
        records += struct.pack("<Q", 8 + len(body)) + body
    data = xig + records + xig
    return "net.inet.divert.pcblist: Format:S,xinpcb Length:%d Dump:0x%s" % (
        len(data), binascii.hexlify(data).decode("ascii"))


def sockstat_text(rows):
    """Plain `sockstat -4 -P divert` (column widths as display() computes with the defaults)."""
    lines = ["USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS      "]
    for port, pid, command in rows:
        if pid is None:
            lines.append("??       ??         ??    ??  div4   *:%-20d *:*                  " % port)
        else:
            lines.append("root     %-10.10s %-5d 3   div4   *:%-20d *:*                  " % (command, pid, port))
    return "\n".join(lines) + "\n"


class FakeFreeBSD:
    """A host whose commands are answered from this object's state; records every command."""

    def __init__(self, sockets=None, libxo=True, pf_enabled=True, anchor_printed="", pf_conf=None,
                 main_rules='anchor "divert_fleet" all\n', ipfw_list="", kld_loaded=True, rc_conf=None,
                 running=None, pcblist=True):
        self.sockets = list(sockets or [])  # (port, pid, command)
        self.libxo = libxo
        self.pcblist = pcblist  # False: sysctl has no divert pcblist, sockstat is read instead
        self.pf_enabled = pf_enabled
        self.anchor_printed = anchor_printed
        self.main_rules = main_rules
        self.ipfw_list = ipfw_list
        self.kld_loaded = kld_loaded
        self.rc_conf = dict(rc_conf or {})
        self.running = set(running or [])
        self.pf_prints = {PF_WANTED: PF_PRINTED, PF_CHANGED: PF_CHANGED_PRINTED}
        self.fail = {}  # command prefix -> (rc, out, err)
        self.on = {}  # command prefix -> callable(argv) run after the command
        self.log = []
        self.loaded_files = []
        self.pf_conf = pf_conf
        # A service's own sockets: `binder(service)` gives the rows it binds when it starts; they go
        # when it stops (a consumer's sockets close when its process ends).
        self.binder = None
        self.bound_by = {}
        self.states_text = ""  # what `pfctl -ss -vv` prints
        self.main_rules_vv = '@0 anchor "divert_fleet" all\n'
        self.signals = []  # (signal, pid) sent with kill
        self.reloads = []  # services reloaded with `service NAME reload`
        self.pid = {}  # service -> pid

    def host(self, root, name="fw1"):
        self.root = str(root)
        clock = {"now": 0.0}

        def sleep(seconds):
            clock["now"] += seconds

        return FreeBSDHost(runner=self, root=str(root), sleep=sleep, clock=lambda: clock["now"], name=name)

    # --- the runner interface ---
    def run(self, argv, data=None):
        line = " ".join(argv)
        self.log.append(line)
        for prefix, answer in self.fail.items():
            if line.startswith(prefix):
                return answer
        answer = self._answer(argv)
        for prefix, hook in self.on.items():
            if line.startswith(prefix):
                hook(argv)
        return answer

    def _answer(self, argv):
        name, args = argv[0], argv[1:]
        line = " ".join(args)
        if name == "sockstat":
            rows = self.all_sockets()
            if "--libxo" in args:
                if not self.libxo:
                    return 1, "", "sockstat: illegal option -- -\nusage: sockstat [-46cLlSsUuvw] [-j jid] [-p ports]\n"
                return 0, sockstat_json(rows), ""
            return 0, sockstat_text(rows), ""
        if name == "sysctl" and args == ["-x", "net.inet.divert.pcblist"]:
            if not self.pcblist:
                return 1, "", "sysctl: unknown oid 'net.inet.divert.pcblist'\n"
            return 0, pcblist_dump([port for port, _pid, _command in self.all_sockets()]), ""
        if name == "kill":
            self.signals.append((args[0], int(args[1])))
            return 0, "", ""
        if name == "pfctl":
            return self._pfctl(args, line)
        if name == "ipfw":
            return self._ipfw(args)
        if name == "kldstat":
            return (0, "", "") if self.kld_loaded else (1, "", "")
        if name == "kldload":
            self.kld_loaded = True
            return 0, "", ""
        if name == "sysrc":
            return self._sysrc(args)
        if name == "service":
            service, verb = args[0], args[1]
            if verb == "onestatus":
                return (0, "%s is running as pid %d.\n" % (service, self.pid.get(service, 99)), "") \
                    if service in self.running else (1, "%s is not running.\n" % service, "")
            if verb in ("stop", "onestop"):
                if service not in self.running:  # as rc.subr's run_rc_command (no pid, not "fast")
                    return 1, "", "%s not running? (check /var/run/%s.pid).\n" % (service, service)
                self.running.discard(service)
                self.bound_by.pop(service, None)
                return 0, "", ""
            if verb == "reload":
                self.reloads.append(service)
                return 0, "", ""
            if verb in ("start", "onestart") and service in self.running:  # as rc.subr's run_rc_command
                return 1, "", "%s already running? (pid=%d).\n" % (service, self.pid.get(service, 99))
            self.running.add(service)
            if self.binder is not None:
                self.bound_by[service] = list(self.binder(service))
            return 0, "", ""
        if name == "configctl":
            return self._configctl(args)
        return 127, "", "%s: not found" % name

    def all_sockets(self):
        rows = list(self.sockets)
        for service in sorted(self.bound_by):
            rows += self.bound_by[service]
        return rows

    def _configctl(self, args):
        if args[:2] == ["ids", "status"]:
            return (0, "suricata is running as pid 77.\n", "") if "suricata" in self.running \
                else (0, "suricata is not running.\n", "")
        if args[:1] == ["ids"] and args[1] in ("start", "restart"):
            self.running.add("suricata")
            if self.binder is not None:
                self.bound_by["suricata"] = list(self.binder("suricata"))
        elif args[:2] == ["ids", "stop"]:
            self.running.discard("suricata")
            self.bound_by.pop("suricata", None)
        elif args[:2] == ["ids", "reload"]:
            self.reloads.append("suricata")
        return 0, "OK\n", ""

    def _pfctl(self, args, line):
        if line == "-ss -vv":
            return 0, self.states_text, ""
        if line == "-sr -vv":
            return 0, self.main_rules_vv, ""
        if line == "-s info":
            return 0, PF_INFO % ("Enabled" if self.pf_enabled else "Disabled"), ""
        if line == "-e":
            self.pf_enabled = True
            return 0, "", "pf enabled\n"
        if line == "-s rules":
            return 0, self.main_rules, ""
        match = re.match(r"^-a (\S+) -s rules$", line)
        if match:
            return 0, self.anchor_printed, ""
        if re.match(r"^-a \S+ -F rules$", line):
            self.anchor_printed = ""
            return 0, "", "rules cleared\n"
        if "-nf" in args:
            return 0, "", ""
        if args[:2] == ["-f", "/etc/pf.conf"]:
            self.main_rules = 'anchor "divert_fleet" all\n'
            return 0, "", ""
        if "-f" in args and "-a" in args:
            with open(args[args.index("-f") + 1]) as handle:
                content = handle.read()
            self.loaded_files.append(content)
            self.anchor_printed = self.pf_prints.get(content, content)
            return 0, "", ""
        return 1, "", "pfctl: unexpected %s" % line

    def _ipfw(self, args):
        if args == ["-S", "list"]:
            return 0, self.ipfw_list + IPFW_DEFAULT_RULE, ""
        if args[:2] == ["-n", "-q"]:
            return 0, "", ""
        if args[:2] == ["-f", "-q"] and args[2:3] == ["delete"]:
            self._ipfw_delete_set(int(args[4]))
            return 0, "", ""
        if args[:2] == ["-f", "-q"]:
            with open(args[2]) as handle:
                script = handle.read()
            self.loaded_files.append(script)
            for command in script.splitlines():
                words = command.split()
                if words[:2] == ["delete", "set"]:
                    self._ipfw_delete_set(int(words[2]))
                elif words[:2] == ["set", "swap"]:
                    a, b = int(words[2]), int(words[3])
                    out = []
                    for rule in self.ipfw_list.splitlines():
                        m = re.match(r"^(\d+) set (\d+) (.*)$", rule)
                        s = int(m.group(2))
                        s = b if s == a else a if s == b else s
                        out.append("%s set %d %s" % (m.group(1), s, m.group(3)))
                    self.ipfw_list = "\n".join(out) + ("\n" if out else "")
                elif words[:1] == ["add"]:
                    # what ipfw prints for the two rules of IPFW_WANTED
                    body = " ".join(words[4:])
                    body = body.replace("tcp from any to any in via igb0 ip4", "ip4 from any to any proto tcp in via igb0")
                    self.ipfw_list += "%05d set %s %s\n" % (int(words[1]), words[3], body)
            return 0, "", ""
        return 1, "", "ipfw: unexpected"

    def _ipfw_delete_set(self, number):
        kept = [r for r in self.ipfw_list.splitlines() if not re.match(r"^\d+ set %d " % number, r)]
        self.ipfw_list = "\n".join(kept) + ("\n" if kept else "")

    def _sysrc(self, args):
        conf, path = self.rc_conf, None
        if args[:1] == ["-f"]:  # the file itself, below the host's root, as sysrc -f writes it
            path = os.path.join(self.root, args[1].lstrip("/"))
            conf = {}
            if os.path.exists(path):
                for line in open(path).read().splitlines():
                    var, _sep, value = line.partition("=")
                    conf[var] = value.strip('"')
            args = args[2:]
        answer = self._sysrc_in(conf, args)
        if path is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                handle.write("".join('%s="%s"\n' % item for item in sorted(conf.items())))
        return answer

    def _sysrc_in(self, conf, args):
        if args[:1] == ["-e"]:
            out, err = [], []
            for var in args[1:]:
                if var in conf:
                    out.append('%s="%s"' % (var, conf[var]))
                else:
                    err.append("sysrc: unknown variable '%s'" % var)
            return (1 if err else 0), "\n".join(out) + ("\n" if out else ""), "\n".join(err)
        if args[:1] == ["-x"]:
            # as FreeBSD's sysrc: an unset name is "unknown variable" and exit 1 (see the twin's sysrc)
            unknown = [var for var in args[1:] if var not in conf]
            for var in args[1:]:
                conf.pop(var, None)
            return (1 if unknown else 0), "", "".join("sysrc: unknown variable '%s'\n" % var for var in unknown)
        for assignment in args:
            var, _sep, value = assignment.partition("=")
            conf[var] = value
        return 0, "", ""

    def commands(self, prefix):
        return [line for line in self.log if line.startswith(prefix)]

    def index(self, prefix):
        for number, line in enumerate(self.log):
            if line.startswith(prefix):
                return number
        raise AssertionError("%r never ran; ran %r" % (prefix, self.log))


GROUPS = {8000: 3, 8100: 1}
WHOLE = [(8000, 4211, "divert-reflector")] * 3 + [(8100, 4300, "appidd")]


def pf_host(tmp_path, **kwargs):
    """A scripted FreeBSD with /etc/pf.conf below tmp_path: (fake, host, backend for anchor divert_fleet)."""
    from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import PfBackend
    fake = FakeFreeBSD(**kwargs)
    (tmp_path / "etc").mkdir(exist_ok=True)
    if fake.pf_conf is not None:
        (tmp_path / "etc" / "pf.conf").write_text(fake.pf_conf)
    host = fake.host(tmp_path)
    return fake, host, PfBackend(host, "divert_fleet")
