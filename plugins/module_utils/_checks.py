# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cross-field rules of a fleet spec, one function per diagnostic code. Private to the divert.fleet collection.

Each function takes the loaded Document and the resolved Fleet and yields
diagnostics. Each names the FreeBSD fact it enforces (freebsd-facts.md); the
load-balancing ones ask `_lb`, the single source of that model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import heapq
import ipaddress

from ansible_collections.divert.fleet.plugins.module_utils import _grammar, _lb, _render
from ansible_collections.divert.fleet.plugins.module_utils._model import _is_int, _consumer_refs, _list, _dict

OPNSENSE_RESERVED = {8000: "Suricata's IPS divert mode", 8668: "natd"}
OPNSENSE_RESERVED_RANGE = (8100, 8355)  # OPNsense's application-matching daemon, up to 256 rules
IPFW_MAX_RULE = 65534  # 65535 is ipfw's fixed default rule
IPFW_RESERVED_SET = 31  # `ipfw flush` spares set 31: it holds rules that must survive a flush
PORT_PROTOCOLS = ("tcp", "udp")


_quote = _grammar.quote
LISTED_NAMES = 10  # names a message lists ("defined consumers: ...")
SUGGESTED_FROM = 200  # a "did you mean" is looked for among at most this many names


def _names(names):
    """The first names in sorted order, and how many there are when not all are listed."""
    names = list(names)
    first = heapq.nsmallest(LISTED_NAMES, names, key=str)
    text = ", ".join(_quote(n) for n in first) or "none"
    return text + (" (%d in all)" % len(names) if len(names) > len(first) else "")


def _suggest(name, candidates):
    if not isinstance(name, str) or len(name) > _grammar.QUOTE_MAX or len(candidates) > SUGGESTED_FROM:
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return " (did you mean %s?)" % _quote(close[0]) if close else ""


def _rule_ports_path(rule):
    return rule.path + (("port",) if _is_int(rule.port) else ("consumer",))


# --- errors -----------------------------------------------------------------

def unknown_profile(doc, fleet):
    defined = None
    for host in fleet.hosts.values():
        if host.profile is not None and host.profile not in fleet.profiles:
            defined = defined or _names(fleet.profiles)
            yield doc.diagnostic(
                "unknown-profile", host.path + ("profile",),
                "host %s takes profile %s, which is not defined; defined profiles: %s%s" % (
                    _quote(host.name), _quote(host.profile), defined,
                    _suggest(host.profile, fleet.profiles)))


def unknown_consumer(doc, fleet):
    data = _dict(doc.data)
    layers = [(_dict(p), ("profiles", n)) for n, p in _dict(data.get("profiles")).items()]
    layers += [(_dict(h), ("hosts", n)) for n, h in _dict(data.get("hosts")).items()]
    defined = _names(fleet.consumers)
    for fields, base in layers:
        for name, _override, path in _consumer_refs(fields.get("consumers"), base + ("consumers",)):
            if name not in fleet.consumers:
                yield doc.diagnostic(
                    "unknown-consumer", path,
                    "consumer %s is not defined; defined consumers: %s%s" % (
                        _quote(name), defined, _suggest(name, fleet.consumers)))
        for index, rule in enumerate(_list(fields.get("rules"))):
            name = _dict(rule).get("consumer")
            if isinstance(name, str) and name not in fleet.consumers:
                yield doc.diagnostic(
                    "unknown-consumer", base + ("rules", index, "consumer"),
                    "rule %s diverts to consumer %s, which is not defined; defined consumers: %s%s" % (
                        _quote(_dict(rule).get("name")), _quote(name), defined,
                        _suggest(name, fleet.consumers)))


def duplicate_rule(doc, fleet):
    for host in fleet.hosts.values():
        first = {}
        for rule in host.rules:
            if not isinstance(rule.name, str):
                continue
            if rule.name in first:
                line, column = doc.position(first[rule.name] + ("name",))
                yield doc.diagnostic(
                    "duplicate-rule", rule.path + ("name",),
                    "host %s has two rules named %s (the first at line %s, column %s); rule names label pf rules "
                    "and must be unique per host - rename one" % (
                        _quote(host.name), _quote(rule.name), line, column))
            else:
                first[rule.name] = rule.path


def socket_limit(doc, fleet):
    # divert(4): at most 32 sockets in one SO_REUSEPORT_LB group; the 33rd bind fails with ENOSPC.
    for host in fleet.hosts.values():
        for group in host.groups():
            if group.size > _lb.MAX_GROUP:
                parts = " + ".join("%s %d" % (c.name, c.sockets) for c in group.consumers)
                yield doc.diagnostic(
                    "socket-limit", group.consumers[-1].path,
                    "port %d on host %s would have %d sockets (%s); a divert port takes at most %d - the "
                    "next bind fails with ENOSPC. Lower the sockets or move a consumer to another port" % (
                        group.port, _quote(host.name), group.size, parts, _lb.MAX_GROUP))


def port_unbound(doc, fleet):
    # ip_divert.c: a packet diverted to a port with no socket is dropped (noport): divert fails closed.
    for host in fleet.hosts.values():
        bound = {g.port for g in host.groups()}
        running = {c.name for c in host.consumers}
        for rule in host.rules:
            if rule.target_port is None or rule.target_port in bound:
                continue
            if isinstance(rule.consumer, str) and rule.consumer in fleet.consumers and rule.consumer not in running:
                message = ("rule %s diverts to consumer %s (port %d), which host %s does not run; add %s to the "
                           "host's consumers, or every packet the rule matches is dropped" % (
                               _quote(rule.name), _quote(rule.consumer), rule.target_port,
                               _quote(host.name), _quote(rule.consumer)))
            else:
                message = ("rule %s diverts to port %d, which no consumer on host %s binds (bound ports: %s); "
                           "every packet it matches would be dropped" % (
                               _quote(rule.name), rule.target_port, _quote(host.name),
                               ", ".join(str(p) for p in sorted(bound)) or "none"))
            yield doc.diagnostic("port-unbound", _rule_ports_path(rule), message)


def port_mismatch(doc, fleet):
    for host in fleet.hosts.values():
        for rule in host.rules:
            if not (_is_int(rule.port) and isinstance(rule.consumer, str)):
                continue
            definition = fleet.consumers.get(rule.consumer, ({}, None))[0]
            port = definition.get("port")
            if _is_int(port) and port != rule.port:
                yield doc.diagnostic(
                    "port-mismatch", rule.path + ("port",),
                    "rule %s gives port %d but its consumer %s binds port %d; give port %d, or drop `port` and "
                    "let the consumer decide" % (_quote(rule.name), rule.port, _quote(rule.consumer),
                                                 port, port))


def lb_required(doc, fleet):
    # A socket without SO_REUSEPORT_LB holds the port alone (EADDRINUSE for the next bind); an LB socket can
    # still join and starve it (inferred), so never mix: every socket of a shared port sets SO_REUSEPORT_LB.
    for host in fleet.hosts.values():
        for group in host.groups():
            if group.size <= 1:
                continue
            for consumer in group.consumers:
                if consumer.lb is False:
                    yield doc.diagnostic(
                        "lb-required", consumer.path,
                        "consumer %s on host %s has lb: false, but port %d has %d sockets; sockets sharing a port "
                        "must all set SO_REUSEPORT_LB (lb: true), or the consumer must be alone with one socket" % (
                            _quote(consumer.name), _quote(host.name), group.port, group.size))


def pf_inet6(doc, fleet):
    # freebsd-facts.md, "What changed" 5: the seed kernel's pf runs one pf_test for both families and
    # ip_divert.c reinjects IPv6, so it diverts IPv6; older pf with a separate pf_test6 (opnsense/src at
    # 02cfd1c7) passes IPv6 undiverted ("pf: divert(9) is not supported for IPv6"). Which releases merged
    # the two is not established: a warning, not an error.
    for host in fleet.hosts.values():
        if host.backend != "pf":
            continue
        for rule in host.rules:
            if rule.family == "inet6":
                yield doc.diagnostic(
                    "pf-inet6", rule.path + ("family",),
                    "rule %s on pf host %s diverts IPv6: the seed kernel's pf (freebsd-src 895a0ae67f) diverts it, "
                    "but an older pf with a separate pf_test6 passes it uninspected (\"divert(9) is not supported "
                    "for IPv6\"); make sure host %s runs a kernel with the change, or use ipfw for IPv6" % (
                        _quote(rule.name), _quote(host.name), _quote(host.name)))


def label_length(doc, fleet):
    # pfctl parse.y: "rule label too long (max 63 chars)" (PF_RULE_LABEL_SIZE 64, one byte for the NUL).
    for host in fleet.hosts.values():
        if host.backend != "pf":
            continue
        for rule in host.rules:
            if not isinstance(rule.name, str):
                continue
            label = _render.pf_label(host.anchor, rule.name)
            if len(label) > _render.PF_LABEL_MAX:
                yield doc.diagnostic(
                    "label-length", rule.path + ("name",),
                    "rule %s on pf host %s gets the label %s, %d characters; pfctl refuses labels over %d "
                    "(\"rule label too long\") - shorten the rule name to at most %d characters or the anchor %s" % (
                        _quote(rule.name), _quote(host.name), _quote(label), len(label),
                        _render.PF_LABEL_MAX, max(0, _render.PF_LABEL_MAX - len(host.anchor) - 1),
                        _quote(host.anchor)))


def _consumer_definitions(fleet):
    """(name, definition, path) of every consumer the spec defines."""
    for name, (definition, path) in fleet.consumers.items():
        yield name, definition, path


def reserved_service(doc, fleet):
    # The consumer role sets SERVICE_enable and the consumer's rc_vars, may install
    # /usr/local/etc/rc.d/SERVICE (reference: true), and restarts the service whenever its
    # configuration changes: a base-system service restarted that way cuts filtering, routing or
    # access (_grammar.RESERVED_SERVICES says why for each).
    for name, definition, path in _consumer_definitions(fleet):
        service = definition.get("service")
        if not _grammar.matches("service", service):
            continue  # the schema reports a malformed name
        why = _grammar.reserved("service", service)
        if why:
            yield doc.diagnostic(
                "reserved-service", path + ("service",),
                "consumer %s runs service %s, which divert.fleet must not configure or restart: %s; give the "
                "consumer a service of its own (the name of its rc.d script)" % (_quote(name), _quote(service), why))


def shared_service(doc, fleet):
    # One service is one rc.d script, one set of SERVICE_* variables and one process to restart: two
    # consumers on it overwrite each other's configuration, and restarting one restarts the other.
    for host in fleet.hosts.values():
        first = {}
        for consumer in host.consumers:
            service = consumer.service
            if not isinstance(service, str):
                continue
            if service not in first:
                first[service] = consumer
                continue
            line, column = doc.position(first[service].path)
            yield doc.diagnostic(
                "shared-service", consumer.path,
                "consumers %s and %s (line %s, column %s) both run service %s on host %s; each consumer needs a "
                "service of its own, or their rc.conf variables and restarts are shared" % (
                    _quote(consumer.name), _quote(first[service].name), line, column, _quote(service),
                    _quote(host.name)))


def reserved_rc_var(doc, fleet):
    # rc.conf is global on FreeBSD: a consumer's variable can switch off pf or ipfw, forwarding, the
    # boot gate or divert.fleet's own loading of ipdivert.ko (kld_list).
    for name, definition, path in _consumer_definitions(fleet):
        service = definition.get("service")
        own = service if _grammar.matches("service", service) else None
        for var in _dict(definition.get("rc_vars")):
            if not _grammar.matches("rc_var", var):
                continue  # the schema reports a malformed name
            why = _grammar.reserved("rc_var", var, service=own)
            if why:
                yield doc.diagnostic(
                    "reserved-rc-var", path + ("rc_vars", var),
                    "consumer %s sets rc.conf variable %s, which it may not: %s; set only the variables of its own "
                    "service%s" % (_quote(name), _quote(var), why, " (%s_*)" % own if own else ""), key=True)


def unsafe_rc_value(doc, fleet):
    # rc.subr evals `${name}_flags` (and other variables) unquoted when the service starts, as root:
    # `&`, `;`, `|`, `$(...)` or a backquote in a value runs a command; sysrc writes the value between
    # double quotes, which a `"` or `\` ends.
    for name, definition, path in _consumer_definitions(fleet):
        for var, value in _dict(definition.get("rc_vars")).items():
            if not isinstance(value, str):
                continue  # the schema reports a value that is not text
            found = _grammar.rc_value_problem(value)
            if found:
                yield doc.diagnostic(
                    "unsafe-rc-value", path + ("rc_vars", var),
                    "consumer %s: %s; rc.subr runs such values through the shell as root when the service starts "
                    "- write the value without it" % (_quote(name), found))


def interface_keyword(doc, fleet):
    # pfctl's lexer turns these words into keywords (sbin/pfctl/parse.y, lookup()): `on to` does not
    # name an interface called "to". ipfw reads `via any` as every interface.
    for rule in _distinct_rules(fleet):
        if not _grammar.matches("interface", rule.interface):
            continue
        why = _grammar.reserved("interface", rule.interface)
        if why:
            yield doc.diagnostic(
                "interface-keyword", rule.path + ("interface",),
                "rule %s names interface %s: %s; name the interface as ifconfig shows it (e.g. igb0), or leave "
                "`interface` out for all interfaces" % (_quote(rule.name), _quote(rule.interface), why))


# Drivers that run a second instance beside the first (a standby group, I5).
STANDBY_DRIVERS = ("reflector", "suricata")
OPNSENSE_IDS_PORT = 8000  # OPNsense's IDS template writes suricata_divertport="8000"
SURICATA_MAX_LISTENERS = 16  # Suricata's source-ipfw.c: IPFW_MAX_QUEUE 16


def _field_path(consumer, fleet, key):
    """The path of a consumer field in its definition (where a person changes it)."""
    definition = fleet.consumers.get(consumer.name)
    return definition[1] + (key,) if definition else consumer.path


def standby_port(doc, fleet):
    # I5: the next group binds on the standby port while the serving one keeps its port: the two
    # must differ, must not be another consumer's port, the port must be the consumer's alone, and
    # the driver must run a second instance (_grammar.standby_clash, which the host checks again).
    for host in fleet.hosts.values():
        for consumer in host.consumers:
            standby = consumer.standby_port
            if not _is_int(standby) or not _is_int(consumer.port):
                continue
            others = [(other.name, other.port, other.standby_port) for other in host.consumers
                      if other is not consumer]
            clash = _grammar.standby_clash(consumer.port, standby, others)
            path = _field_path(consumer, fleet, "standby_port")
            if clash and clash[0] == "own":
                message = "consumer %s has standby_port %d, its own port; the next group needs a port of its own " \
                          "beside the serving one - pick another" % (_quote(consumer.name), standby)
            elif clash and clash[0] == "taken":
                message = "consumer %s has standby_port %d on host %s, which consumer %s uses; two groups would " \
                          "share the port - pick a free one" % (_quote(consumer.name), standby, _quote(host.name),
                                                                _quote(clash[1]))
            elif clash:
                message = "consumer %s has a standby_port, but shares port %d with consumer %s on host %s: the " \
                          "rules divert to the port's whole group, so switching %s alone would move %s's flows " \
                          "with it - give it a port of its own, or drop standby_port" % (
                              _quote(consumer.name), consumer.port, _quote(clash[1]), _quote(host.name),
                              _quote(consumer.name), _quote(clash[1]))
            elif consumer.driver not in STANDBY_DRIVERS:
                message = "consumer %s (driver %s) has a standby_port, but that driver runs one instance only; " \
                          "use driver %s, or drop standby_port and allow disruption for its restarts" % (
                              _quote(consumer.name), consumer.driver, " or ".join(STANDBY_DRIVERS))
            else:
                continue
            yield doc.diagnostic("standby-port", path, message)


def opnsense_ids(doc, fleet):
    # freebsd-facts.md, OPNsense: its own Suricata takes its divert mode from the IDS model; the
    # template fixes port 8000; there is one IDS per box.
    for host in fleet.hosts.values():
        seen = None
        for consumer in host.consumers:
            if consumer.driver != "opnsense-ids":
                continue
            if host.platform not in (None, "opnsense"):
                yield doc.diagnostic(
                    "opnsense-ids", consumer.path,
                    "consumer %s uses driver opnsense-ids, OPNsense's own Suricata, on host %s, which is %s; use "
                    "driver suricata (FreeBSD ports) there" % (_quote(consumer.name), _quote(host.name), host.platform))
            if _is_int(consumer.port) and consumer.port != OPNSENSE_IDS_PORT:
                yield doc.diagnostic(
                    "opnsense-ids", _field_path(consumer, fleet, "port"),
                    "consumer %s uses driver opnsense-ids on port %d; OPNsense's IDS diverts on port %d only (its "
                    "template writes suricata_divertport=\"8000\") - set port: %d" % (
                        _quote(consumer.name), consumer.port, OPNSENSE_IDS_PORT, OPNSENSE_IDS_PORT))
            if seen is not None:
                yield doc.diagnostic(
                    "opnsense-ids", consumer.path,
                    "host %s has two opnsense-ids consumers (%s and %s); OPNsense runs one IDS - keep one" % (
                        _quote(host.name), _quote(seen.name), _quote(consumer.name)))
            seen = consumer


def suricata_listeners(doc, fleet):
    # Suricata takes at most 16 divert listeners per process ("too much IPFW divert port registered").
    for host in fleet.hosts.values():
        for consumer in host.consumers:
            if consumer.driver == "suricata" and _is_int(consumer.sockets) and \
                    consumer.sockets > SURICATA_MAX_LISTENERS:
                yield doc.diagnostic(
                    "suricata-listeners", consumer.path,
                    "consumer %s on host %s asks one Suricata process for %d divert listeners; Suricata takes at "
                    "most %d (IPFW_MAX_QUEUE) - lower sockets, or split the group over two consumers" % (
                        _quote(consumer.name), _quote(host.name), consumer.sockets, SURICATA_MAX_LISTENERS))


def stateless_lb(doc, fleet):
    # ip_divert.c: packets without a state pass id 0 and all reach one slot, jenkins_hash(0) % count (_lb).
    for host in fleet.hosts.values():
        if host.backend != "pf":
            continue
        for rule in host.rules:
            group = host.group(rule.target_port) if rule.target_port is not None else None
            if rule.state == "none" and group is not None and group.size > 1:
                yield doc.diagnostic(
                    "stateless-lb", rule.path + ("state",),
                    "rule %s has state: none but diverts to port %d, a group of %d sockets on host %s; without a "
                    "state pf passes id 0 and every packet reaches one socket, slot %d - use state: keep, or a "
                    "single-socket consumer" % (
                        _quote(rule.name), group.port, group.size, _quote(host.name),
                        _lb.stateless_slot(group.size)))


def ports_need_proto(doc, fleet):
    for host in fleet.hosts.values():
        for rule in host.rules:
            for key, ports in (("from_ports", rule.from_ports), ("to_ports", rule.to_ports)):
                other = [p for p in rule.protocols if p not in PORT_PROTOCOLS]
                if ports and other:
                    yield doc.diagnostic(
                        "ports-need-proto", rule.path + (key,),
                        "rule %s matches %s with protocol %s; ports exist only for tcp and udp - set protocol: tcp, "
                        "udp or [tcp, udp]" % (_quote(rule.name), key, ", ".join(_quote(p) for p in rule.protocols)))


def ipfw_rule_range(doc, fleet):
    # ipfw(8): rule numbers 1..65534 (65535 is the default rule); `flush` spares set 31.
    for host in fleet.hosts.values():
        if host.backend != "ipfw":
            continue
        settings = host.ipfw
        path = host.field_paths.get("ipfw", host.path)
        live, spare = settings.get("set"), settings.get("spare_set")
        base, step = settings.get("rule_base"), settings.get("rule_step")
        if _is_int(live) and live == spare:
            yield doc.diagnostic(
                "ipfw-rule-range", path,
                "host %s uses set %d as both set and spare_set; the spare set must differ so new rules load "
                "beside the live ones and `ipfw set swap` exchanges them" % (_quote(host.name), live))
        for key, value in (("set", live), ("spare_set", spare)):
            if value == IPFW_RESERVED_SET:
                yield doc.diagnostic(
                    "ipfw-rule-range", path,
                    "host %s uses set 31 as %s; ipfw's flush spares set 31, so rules there cannot be replaced "
                    "cleanly - pick a set from 0..30" % (_quote(host.name), key))
        if _is_int(base) and _is_int(step):
            lines = sum(_ipfw_lines(rule) for rule in host.rules)
            last = base + step * (lines - 1) if lines else base
            if last > IPFW_MAX_RULE:
                yield doc.diagnostic(
                    "ipfw-rule-range", path,
                    "host %s needs %d ipfw rules numbered from %d by %d, up to %d; ipfw numbers end at %d - lower "
                    "rule_base or rule_step" % (_quote(host.name), lines, base, step, last, IPFW_MAX_RULE))


def _ipfw_lines(rule):
    return len([p for p in rule.protocols if p != "any"]) or 1


def _distinct_rules(fleet):
    """Each rule of the spec once, though a profile's rules appear on every host that takes it."""
    seen = set()
    for host in fleet.hosts.values():
        for rule in host.rules:
            if rule.path not in seen:
                seen.add(rule.path)
                yield rule


def family_mismatch(doc, fleet):
    """Addresses that are malformed (schema) or of the other family (family-mismatch)."""
    for rule in _distinct_rules(fleet):
        for key, addresses in (("from", rule.sources), ("to", rule.destinations)):
            raw = _dict(_at(doc.data, rule.path)).get(key)
            for index, address in enumerate(addresses):
                if address == "any":
                    continue
                path = rule.path + ((key, index) if isinstance(raw, list) else (key,))
                try:
                    network = ipaddress.ip_network(address, strict=False)
                except ValueError:
                    yield doc.diagnostic(
                        "schema", path,
                        "%s is not an IP address or CIDR prefix; write e.g. 10.0.0.0/8, 192.0.2.1 or "
                        "2001:db8::/32" % _quote(address))
                    continue
                if "/" in address and network.network_address != ipaddress.ip_address(address.split("/")[0]):
                    yield doc.diagnostic(
                        "schema", path,
                        "%s has host bits set; the prefix is %s" % (_quote(address), network.with_prefixlen))
                wanted = 4 if rule.family == "inet" else 6
                if rule.family in ("inet", "inet6") and network.version != wanted:
                    yield doc.diagnostic(
                        "family-mismatch", path,
                        "rule %s is family %s but %s is an IPv%d address; use family: %s or an IPv%d address" % (
                            _quote(rule.name), rule.family, address, network.version,
                            "inet" if network.version == 4 else "inet6", wanted))
        for key, ports in (("from_ports", rule.from_ports), ("to_ports", rule.to_ports)):
            for index, port in enumerate(ports):
                if _grammar.matches("port_range", port):  # anything else is the schema's to report
                    low, high = (int(part) for part in port.split(":"))
                    if not (1 <= low <= high <= 65535):
                        yield doc.diagnostic(
                            "schema", rule.path + (key, index),
                            "port range %s must be lo:hi with 1 <= lo <= hi <= 65535" % _quote(port))


def _at(data, path):
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def opnsense_ipfw(doc, fleet):
    # OPNsense runs ipfw only for captive portal or the shaper, and its template starts with `flush`.
    for host in fleet.hosts.values():
        if host.platform == "opnsense" and host.backend == "ipfw":
            yield doc.diagnostic(
                "opnsense-ipfw", host.field_paths.get("backend", host.path),
                "host %s is OPNsense with backend ipfw; OPNsense flushes ipfw rules at every reload, so divert rules "
                "would vanish - use backend: pf" % _quote(host.name))


def host_complete(doc, fleet):
    """After merging, a host needs backend, platform and a consumer (design.md: else `schema` at the host)."""
    for host in fleet.hosts.values():
        missing = [key for key in ("backend", "platform") if getattr(host, key) is None]
        if not host.consumers and not _has_any_consumer_ref(doc, host):
            missing.append("consumers")
        if missing:
            yield doc.diagnostic(
                "schema", host.path,
                "host %s has no %s after merging its profile; set %s on the host or on its profile" % (
                    _quote(host.name), " and no ".join(missing), ", ".join(missing)))


def _has_any_consumer_ref(doc, host):
    data = _dict(doc.data)
    host_fields = _dict(_dict(data.get("hosts")).get(host.name))
    profile = _dict(_dict(data.get("profiles")).get(host.profile)) if host.profile else {}
    return bool(_list(host_fields.get("consumers")) or _list(profile.get("consumers")))


# --- warnings ---------------------------------------------------------------

def lb_ignored(doc, fleet):
    for host in fleet.hosts.values():
        if host.backend != "ipfw":
            continue
        for group in host.groups():
            if group.size > 1:
                yield doc.diagnostic(
                    "lb-ignored", group.consumers[0].path,
                    "port %d on ipfw host %s has %d sockets: %s; use sockets: 1, or pf to spread flows" % (
                        group.port, _quote(host.name), group.size, _lb.explain("ipfw", group.size)))


def suricata_lb(doc, fleet):
    # Upstream Suricata does not set SO_REUSEPORT_LB: its second -d on one port fails (EADDRINUSE)
    # unless it carries OPNsense's patch (security/suricata/files/patch-src_source-ipfw.c).
    for host in fleet.hosts.values():
        for consumer in host.consumers:
            if consumer.driver == "suricata" and _is_int(consumer.sockets) and 1 < consumer.sockets <= \
                    SURICATA_MAX_LISTENERS:
                yield doc.diagnostic(
                    "suricata-lb", consumer.path,
                    "consumer %s on host %s runs %d Suricata listeners on port %s; upstream Suricata does not set "
                    "SO_REUSEPORT_LB and its second listener on one port fails - this needs a Suricata built with "
                    "OPNsense's patch (patch-src_source-ipfw.c), or sockets: 1" % (
                        _quote(consumer.name), _quote(host.name), consumer.sockets, consumer.port))


def reload_missing(doc, fleet):
    # A file in watch.reload of a consumer that declares no way to reload restarts its group.
    for name, (definition, path) in fleet.consumers.items():
        definition = definition if isinstance(definition, dict) else {}
        watch = definition.get("watch") if isinstance(definition.get("watch"), dict) else {}
        driver = definition.get("driver") or ("reflector" if definition.get("reference") else "rc")
        if watch.get("reload") and not definition.get("reload") and driver == "rc":
            yield doc.diagnostic(
                "reload-missing", path + ("watch", "reload"),
                "consumer %s watches files for a reload but declares no reload (driver rc has none), so a change "
                "of them restarts its group; set reload: rc or a signal (SIGHUP, SIGUSR1, SIGUSR2)" % _quote(name))


def port_reserved(doc, fleet):
    for host in fleet.hosts.values():
        if host.platform != "opnsense":
            continue
        for group in host.groups():
            low, high = OPNSENSE_RESERVED_RANGE
            if all(c.driver == "opnsense-ids" for c in group.consumers):
                continue  # OPNsense's own IDS on its own port
            owner = OPNSENSE_RESERVED.get(group.port) or (
                "the application-matching daemon (8100..8355)" if low <= group.port <= high else None)
            if owner:
                yield doc.diagnostic(
                    "port-reserved", group.consumers[0].path,
                    "port %d on OPNsense host %s is used by OPNsense itself (%s); if that is not the consumer meant "
                    "here, pick a port outside 8000, 8100..8355 and 8668" % (group.port, _quote(host.name), owner))


def unused_consumer(doc, fleet):
    for host in fleet.hosts.values():
        targeted = {r.target_port for r in host.rules} | {r.consumer for r in host.rules}
        for consumer in host.consumers:
            if consumer.name not in targeted and consumer.port not in targeted:
                yield doc.diagnostic(
                    "unused-consumer", consumer.path,
                    "consumer %s runs on host %s but no rule of that host diverts to it (port %s); add a rule or "
                    "remove it from the host" % (_quote(consumer.name), _quote(host.name), consumer.port))


def divert_all(doc, fleet):
    for rule in _distinct_rules(fleet):
        if (rule.protocols == ("any",) and not rule.interface and rule.sources == ("any",)
                and rule.destinations == ("any",)):
            yield doc.diagnostic(
                "divert-all", rule.path,
                "rule %s diverts every packet of every interface (no protocol, no interface, any to any), "
                "including the firewall's own management traffic; narrow it with interface, protocol or "
                "addresses" % _quote(rule.name))


ERROR_CHECKS = (unknown_profile, unknown_consumer, host_complete, duplicate_rule, socket_limit, port_unbound,
                port_mismatch, lb_required, stateless_lb, ports_need_proto, ipfw_rule_range,
                family_mismatch, opnsense_ipfw, label_length, reserved_service, shared_service, reserved_rc_var,
                unsafe_rc_value, interface_keyword, standby_port, opnsense_ids, suricata_listeners)
WARNING_CHECKS = (lb_ignored, pf_inet6, port_reserved, unused_consumer, divert_all, suricata_lb, reload_missing)
