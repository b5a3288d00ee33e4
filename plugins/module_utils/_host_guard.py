# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the on-host code accepts, whatever the controller sent; and what the host is.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`). The spec's validation and these checks share one definition of every
allowed string (`_grammar`): a name, an anchor, an rc.conf variable or value that the
validator refuses is refused here too, before anything on the host changes, and no path is
ever built outside the directories the collection owns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.divert.fleet.plugins.module_utils import _grammar
from ansible_collections.divert.fleet.plugins.module_utils._host_os import HostError

MAX_GROUP = 32  # divert(4): at most 32 sockets per load-balancing group
IPFW_RESERVED_SET = 31  # `ipfw flush` spares set 31
# Marks of an OPNsense installation: its configd client and its MVC tree.
OPNSENSE_MARKS = ("/usr/local/sbin/configctl", "/usr/local/opnsense")


def _refuse(what, message):
    raise HostError("refusing %s: %s; nothing was changed" % (what, message), argument=what)


def string(kind, value, what):
    """`value` if it is an allowed string of `kind`, else HostError naming `what`."""
    problem = _grammar.problem(kind, value)
    if problem is not None:
        _refuse(what, problem)
    return value


def port(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        _refuse(what, "divert port %s is not a number from 1 to 65535" % _grammar.quote(value))
    return value


def sockets(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GROUP:
        _refuse(what, "socket count %s is not a number from 1 to %d (divert(4) groups hold at most %d)"
                % (_grammar.quote(value), MAX_GROUP, MAX_GROUP))
    return value


def anchor(value):
    """A pf anchor name: never empty (`pfctl -a ""` is the main ruleset), never a path."""
    return string("anchor", value, "anchor")


def ipfw_sets(rule_set, spare_set):
    for what, value in (("set", rule_set), ("spare_set", spare_set)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 30:
            _refuse(what, "ipfw set %s is not a number from 0 to 30 (set 31 survives `ipfw flush`)"
                    % _grammar.quote(value))
    if rule_set == spare_set:
        _refuse("spare_set", "ipfw set %d and spare set %d must differ" % (rule_set, spare_set))


def groups(value):
    """{port: sockets} from a mapping whose keys may be strings (JSON)."""
    if not isinstance(value, dict):
        _refuse("groups", "groups must map divert ports to socket counts")
    out = {}
    for key, count in value.items():
        out[port(_number(key), "groups")] = sockets(_number(count), "groups")
    return out


def _number(value):
    """An int, or the int a string of decimal digits spells (JSON keys are strings)."""
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value, 10)
    return value


def consumers(items):
    """Each consumer's name, port, sockets, service and rc.conf variables, as the spec allows them."""
    services = {}
    for index, consumer in enumerate(items):
        where = "consumers[%d]" % index
        name = string("name", consumer.get("name"), where + ".name")
        where = "consumer %s" % name
        port(consumer.get("port"), where + " port")
        sockets(consumer.get("sockets"), where + " sockets")
        service = string("service", consumer.get("service"), where + " service")
        if service in services:
            _refuse(where + " service", "service %s is already the service of consumer %s; two consumers cannot "
                    "share one rc.d service" % (_grammar.quote(service), services[service]))
        services[service] = name
        if consumer.get("standby_port") is not None:
            standby = port(consumer.get("standby_port"), where + " standby_port")
            others = [(other.get("name"), other.get("port"), other.get("standby_port"))
                      for other in items if other is not consumer and isinstance(other, dict)]
            clash = _grammar.standby_clash(consumer["port"], standby, others)
            if clash is not None:
                _refuse(where + " standby_port", {
                    "own": "standby_port %d is the consumer's own port" % standby,
                    "taken": "standby_port %d is a port of consumer %s" % (standby, _grammar.quote(clash[1])),
                    "shared": "port %d is shared with consumer %s: a switch of one would move the other's flows"
                              % (consumer["port"], _grammar.quote(clash[1])),
                }[clash[0]])
        watch = consumer.get("watch") or {}
        if not isinstance(watch, dict) or set(watch) - set(("restart", "reload")):
            _refuse(where + " watch", "watch takes restart and reload, each a list of paths")
        for kind in ("restart", "reload"):
            paths = watch.get(kind) or []
            if not isinstance(paths, list):
                _refuse(where + " watch", "watch.%s must be a list of paths" % kind)
            for path in paths:
                string("path", path, where + " watch.%s" % kind)
        for variable, value in sorted((consumer.get("rc_vars") or {}).items()):
            string("rc_var", variable, where + " rc_vars")
            why = _grammar.reserved("rc_var", variable, service)
            if why is not None:
                _refuse(where + " rc_vars", "rc.conf variable %s is reserved: %s" % (_grammar.quote(variable), why))
            problem = _grammar.rc_value_problem(value if isinstance(value, str) else str(value))
            if problem is not None:
                _refuse(where + " rc_vars", "%s: %s" % (variable, problem))
    return items


# What a rules text may hold, line by line: the rendered rules and comments, nothing else.
_RULE_WORDS = {
    "pf": ("pass", "a divert anchor holds only the rendered `pass ... divert-to` rules"),
    "ipfw": ("add", "an ipfw rules file holds only the rendered `add NUMBER set SET ...` lines"),
}


def rules_text(backend, text):
    """Rules as rendered for `backend`: nothing a reviewer cannot see, no other statements."""
    first, why = _RULE_WORDS[backend]
    found = _grammar.invisible_characters(text)
    if found:
        offset, char = found[0]
        _refuse("rules", "line %d holds %s" % (text.count("\n", 0, offset) + 1, _grammar.char_name(char)))
    for number, line in enumerate(text.split("\n"), 1):
        words = line.split("#", 1)[0].split()
        if words and words[0] != first:
            _refuse("rules", "line %d is not a %s rule (%s): %s" % (number, first, why, _grammar.quote(line.strip())))
    return text


def owned_path(directory, name):
    """`directory/name`, refusing any name that would leave the directory."""
    path = os.path.normpath(os.path.join(directory, name))
    if os.path.dirname(path) != os.path.normpath(directory) or os.path.basename(path) != name:
        _refuse("path", "%s would not be a file in %s" % (_grammar.quote(name), directory))
    return path


def detect_platform(host):
    """'opnsense' where OPNsense's configctl or MVC tree is installed, else 'freebsd'."""
    for mark in OPNSENSE_MARKS:
        if os.path.exists(host.path(mark)):
            return "opnsense"
    return "freebsd"


def platform(host, declared):
    """The declared platform, refused if the host is something else (before anything changes).

    On OPNsense the collection never touches /etc/pf.conf (OPNsense generates the whole
    ruleset and loading pf.conf would replace it); on FreeBSD there is no configctl."""
    actual = detect_platform(host)
    if declared != actual:
        _refuse("platform", "host %s is %s (%s), but the spec says platform: %s; set platform: %s for this host"
                % (host.name, "OPNsense" if actual == "opnsense" else "FreeBSD",
                   "found %s" % next(m for m in OPNSENSE_MARKS if os.path.exists(host.path(m)))
                   if actual == "opnsense" else "no configctl, no /usr/local/opnsense",
                   declared, actual))
    return actual
