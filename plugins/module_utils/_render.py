# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering a resolved host's rules: a pf anchor or an ipfw rules file. Private to the divert.fleet collection.

The text is deterministic: the same resolved host gives the same bytes, with
no dependence on dict order or the hash seed. Every token comes from a
schema-checked field (names, interfaces, addresses, ports match patterns that
exclude newline, ';', '#', '"', '{', '}' and back-slash), so no value can end a
statement early.

Grammar facts (freebsd-facts.md, sbin/pfctl/parse.y, ipfw(8)):
- pf diverts only on a pass rule (`action == PF_PASS && r->divert.port`);
  `divert-to PORT` (FreeBSD ignores a host). A `quick` pass rule ends the
  evaluation inside the anchor: the divert decision is final there.
- ipfw: `divert PORT` sends the packet and ends the search; rules are numbered
  1..65534 in sets 0..31; a rules file for `ipfw -q FILE` holds one command per
  line without the leading `ipfw`, and lines starting with '#' are comments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PF_SUFFIX = ".pf.conf"
IPFW_SUFFIX = ".ipfw.rules"


def _header(host, what, load_command):
    return [
        "# divert.fleet %s for host %s (backend %s, platform %s)" % (what, host.name, host.backend, host.platform),
        "# spec digest sha256:%s" % host.digest(),
        "# Rendered text: change the fleet spec and render again rather than editing. Load with: %s" % load_command,
    ]


# --- pf ---------------------------------------------------------------------

def _pf_list(items):
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else "{ %s }" % ", ".join(items)


def _pf_ports(ports):
    return " port %s" % _pf_list(ports) if ports else ""


def _pf_side(keyword, addresses, ports):
    return "%s %s%s" % (keyword, _pf_list(addresses), _pf_ports(ports))


PF_LABEL_MAX = 63  # pfctl: "rule label too long (max 63 chars)" (PF_RULE_LABEL_SIZE 64)


def pf_label(anchor, rule_name):
    """The label a rule carries, so `pfctl -sl` counts it and `pfctl -k label` finds its states."""
    return "%s:%s" % (anchor, rule_name)


def pf_rule(rule, anchor):
    """One pf rule: pass [dir] quick [on IF] inet [proto P] from A [port] to B [port] state label divert-to."""
    words = ["pass"]
    if rule.direction in ("in", "out"):
        words.append(rule.direction)
    words.append("quick")
    if rule.interface:
        words.append("on %s" % rule.interface)
    words.append(rule.family)
    protocols = [p for p in rule.protocols if p != "any"]
    if protocols:
        words.append("proto %s" % _pf_list(protocols))
    words.append(_pf_side("from", rule.sources, rule.from_ports))
    words.append(_pf_side("to", rule.destinations, rule.to_ports))
    words.append("no state" if rule.state == "none" else "keep state")
    words.append('label "%s"' % pf_label(anchor, rule.name))
    words.append("divert-to %d" % rule.target_port)
    return " ".join(words)


def _rendered(rule, key, make):
    """make(), kept on the rule: the hosts of a profile share its Rule objects, and so their text."""
    texts = rule.rendered
    if texts is None:
        texts = rule.rendered = {}
    if key not in texts:
        texts[key] = make()
    return texts[key]


def render_pf(host):
    """The pf anchor text of a resolved host."""
    lines = _header(host, 'pf anchor "%s"' % host.anchor, "pfctl -a %s -f FILE" % host.anchor)
    anchor = host.anchor
    lines.extend(_rendered(rule, ("pf", anchor), lambda: pf_rule(rule, anchor)) for rule in host.rules)
    return "\n".join(lines) + "\n"


# --- ipfw -------------------------------------------------------------------

_IPFW_PROTOCOL = {
    ("inet", "any"): "ip4", ("inet6", "any"): "ip6",
    ("inet", "icmp"): "icmp", ("inet6", "icmp"): "ipv6-icmp",
}


def _ipfw_ports(ports):
    return ",".join(str(p).replace(":", "-") for p in ports)


def _ipfw_side(addresses, ports):
    text = ",".join(addresses) if addresses != ("any",) else "any"
    return "%s %s" % (text, _ipfw_ports(ports)) if ports else text


def ipfw_rule_bodies(rule):
    """The ipfw rule bodies of one spec rule: one per protocol (ipfw takes one protocol per rule)."""
    bodies = []
    protocols = [p for p in rule.protocols if p != "any"] or ["any"]
    for protocol in protocols:
        words = ["divert %d" % rule.target_port, _IPFW_PROTOCOL.get((rule.family, protocol), protocol)]
        words.append("from %s" % _ipfw_side(rule.sources, rule.from_ports))
        words.append("to %s" % _ipfw_side(rule.destinations, rule.to_ports))
        if rule.direction in ("in", "out"):
            words.append(rule.direction)
        if rule.interface:
            words.append("via %s" % rule.interface)
        if protocol in ("tcp", "udp") and rule.sources == ("any",) and rule.destinations == ("any",):
            # Addresses imply the family; with `any` on both sides say it, or IPv6 would match too.
            words.append("ip4" if rule.family == "inet" else "ip6")
        bodies.append(" ".join(words))
    return bodies


def ipfw_lines(host, rule_set=None):
    """(number, text) of every `add` command of a host, numbered from rule_base by rule_step."""
    settings = host.ipfw
    rule_set = settings["set"] if rule_set is None else rule_set
    number = settings["rule_base"]
    lines = []
    for rule in host.rules:
        for body in _rendered(rule, ("ipfw",), lambda: ipfw_rule_bodies(rule)):
            lines.append((number, "add %d set %d %s" % (number, rule_set, body)))
            number += settings["rule_step"]
    return lines


def render_ipfw(host):
    """The ipfw rules file of a resolved host, for `ipfw -q FILE`."""
    lines = _header(host, "ipfw rules in set %d" % host.ipfw["set"],
                    "ipfw -q FILE (divert.fleet loads it into spare set %d and swaps)" % host.ipfw["spare_set"])
    lines.extend(text for _number, text in ipfw_lines(host))
    return "\n".join(lines) + "\n"


def render(host):
    """The host's rules text for its backend."""
    return render_pf(host) if host.backend == "pf" else render_ipfw(host)


def file_name(host):
    return host.name + (PF_SUFFIX if host.backend == "pf" else IPFW_SUFFIX)


def divert_ports(host):
    """The ports the host's rules divert to, sorted."""
    return sorted({rule.target_port for rule in host.rules if rule.target_port is not None})
