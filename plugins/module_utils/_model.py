# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resolved fleet model: profiles and hosts merged. Private to the divert.fleet collection.

Merging (design.md): a host's scalar fields override its profile's; `consumers`
entries override by name; `rules` are the profile's followed by the host's own.
Every resolved item remembers the path it came from, so a cross-field check on
a resolved host still points at the line a person has to change.

The builder is defensive: it also runs on documents with schema errors (so that
one run reports every problem), skipping values of the wrong type instead of
failing on them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from json.encoder import encode_basestring_ascii as _encode_string

DEFAULT_ANCHOR = "divert_fleet"
IPFW_DEFAULTS = {"set": 5, "spare_set": 6, "rule_base": 10000, "rule_step": 10}
CONSUMER_DEFAULTS = {"sockets": 1, "lb": True, "ready_timeout": 60, "reference": False, "rc_vars": {}}
# Consumer fields that reach the host only when the spec gives them.
CONSUMER_OPTIONS = ("driver", "standby_port", "reload", "watch", "drain_timeout")
PF_OPTIONS = ("placement", "priority")
RULE_DEFAULTS = {"direction": "in", "family": "inet", "protocol": "any", "from": "any", "to": "any",
                 "from_ports": [], "to_ports": [], "state": "keep"}
HOST_SCALARS = ("backend", "platform")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return value if isinstance(value, list) else []


def _text(value):
    """A name field of a (possibly invalid) spec: the text, or None when it is not text (the schema
    reports that), so that the checks can compare and hash it."""
    return value if isinstance(value, str) else None


def _canonical(value):
    """Canonical JSON: sorted keys, no spaces. Composes: the text of a mapping is made of the texts of its
    keys and values, so a part shared by many hosts is written once."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_PIECES = {}


def _piece(value, kind=None):
    """_canonical(kind(value) if kind else value), remembered: hosts share their backend, platform, pf and
    ipfw settings (a tuple of items for a mapping). Keyed by repr, which tells 1 from True and 1.0; the
    memory is bounded."""
    key = (kind, repr(value))
    text = _PIECES.get(key)
    if text is None:
        text = _canonical(kind(value) if kind else value)
        if len(_PIECES) > 10000:
            _PIECES.clear()
        _PIECES[key] = text
    return text


def _json_text(value):
    """_canonical(value), written directly for a string or a whole number (not a bool)."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if kind is int:
        return "%d" % value
    return _canonical(value)


def _group_text(group):
    """_canonical(group.as_dict()): names are text, the port and the size whole numbers."""
    return '{"consumers":[%s],"port":%s,"size":%s}' % (
        ",".join(_json_text(c.name) for c in group.consumers), _json_text(group.port), _json_text(group.size))


class Consumer:
    """A consumer as it runs on one host."""

    # Slots: a fleet of 50,000 hosts resolves to hundreds of thousands of these and of Rule.
    __slots__ = ("name", "port", "sockets", "lb", "service", "rc_vars", "ready_timeout", "reference", "description",
                 "path", "options", "rc_vars_template", "canonical_text")

    def __init__(self, name, port, sockets, lb, service, rc_vars, ready_timeout, reference, description, path,
                 options=None, rc_vars_template=None):
        self.name = name
        self.port = port
        self.sockets = sockets
        self.lb = lb
        self.service = service
        self.rc_vars = rc_vars
        self.ready_timeout = ready_timeout
        self.reference = reference
        self.description = description
        self.path = path  # where it is placed on the host (the consumers entry), or the definition
        # driver, standby_port, reload, watch, drain_timeout: only those the spec gives, so that a
        # spec that uses none of them resolves (and digests) as before they existed
        self.options = dict(options or {})
        self.rc_vars_template = rc_vars_template
        self.canonical_text = None

    @property
    def driver(self):
        return self.options.get("driver") or ("reflector" if self.reference else "rc")

    @property
    def standby_port(self):
        return self.options.get("standby_port")

    def as_dict(self):
        out = {
            "name": self.name, "port": self.port, "sockets": self.sockets, "lb": self.lb,
            "service": self.service, "rc_vars": dict(sorted(self.rc_vars.items())),
            "ready_timeout": self.ready_timeout, "reference": self.reference,
            "description": self.description,
        }
        out.update(sorted(self.options.items()))
        if self.standby_port is not None and self.rc_vars_template and self.rc_vars_template != self.rc_vars:
            # a standby instance fills @PORT@ and @SOCKETS@ in on the host, with its own port
            out["rc_vars_template"] = dict(sorted(self.rc_vars_template.items()))
        return out

    def canonical(self):
        """_canonical(self.as_dict()), made once: a resolved consumer is not changed, and is shared."""
        if self.canonical_text is None:
            self.canonical_text = _canonical(self.as_dict())
        return self.canonical_text


class Rule:
    """A divert rule of one host, with defaults applied."""

    __slots__ = ("path", "name", "consumer", "port", "interface", "direction", "family", "protocols", "sources",
                 "destinations", "from_ports", "to_ports", "state", "target_port", "canonical_text", "rendered")

    def __init__(self, fields, path):
        self.path = path
        self.name = fields.get("name")
        self.consumer = _text(fields.get("consumer"))
        self.port = fields.get("port")
        self.interface = _text(fields.get("interface"))
        self.direction = fields.get("direction", RULE_DEFAULTS["direction"])
        self.family = fields.get("family", RULE_DEFAULTS["family"])
        protocol = fields.get("protocol", RULE_DEFAULTS["protocol"])
        if isinstance(protocol, list):
            self.protocols = tuple(p for p in protocol if isinstance(p, str))
        else:
            self.protocols = (protocol,) if isinstance(protocol, str) else ()
        self.sources = _addresses(fields.get("from", "any"))
        self.destinations = _addresses(fields.get("to", "any"))
        self.from_ports = tuple(_list(fields.get("from_ports")))
        self.to_ports = tuple(_list(fields.get("to_ports")))
        self.state = fields.get("state", RULE_DEFAULTS["state"])
        self.target_port = None  # resolved divert port, set by the resolver
        self.canonical_text = None
        self.rendered = None  # _render's texts of the rule by (backend, anchor): hosts share a profile's rules

    def as_dict(self):
        return {
            "name": self.name, "consumer": self.consumer, "port": self.target_port,
            "interface": self.interface, "direction": self.direction, "family": self.family,
            "protocols": list(self.protocols), "from": list(self.sources), "to": list(self.destinations),
            "from_ports": list(self.from_ports), "to_ports": list(self.to_ports), "state": self.state,
        }

    def canonical(self):
        """_canonical(self.as_dict()), made once (after resolve() set target_port)."""
        if self.canonical_text is None:
            self.canonical_text = _canonical(self.as_dict())
        return self.canonical_text


def _addresses(value):
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str)) or ("any",)
    return (value,) if isinstance(value, str) else ("any",)


class Group:
    """The sockets bound on one divert port of one host: one load-balancing group."""

    __slots__ = ("port", "consumers")

    def __init__(self, port, consumers):
        self.port = port
        self.consumers = consumers

    @property
    def size(self):
        return sum(c.sockets for c in self.consumers if _is_int(c.sockets))

    def as_dict(self):
        return {"port": self.port, "size": self.size, "consumers": [c.name for c in self.consumers]}


class Host:
    """A host with its profile merged in."""

    __slots__ = ("name", "path", "profile", "backend", "platform", "consumers", "rules", "anchor", "pf_options", "ipfw",
                 "field_paths", "_digest", "_groups")

    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.profile = None
        self.backend = None
        self.platform = None
        self.consumers = []
        self.rules = []
        self.anchor = DEFAULT_ANCHOR
        self.pf_options = {}  # placement, priority: only those the spec gives
        self.ipfw = dict(IPFW_DEFAULTS)
        self.field_paths = {}
        self._digest = None
        self._groups = None

    def groups(self):
        """Groups by port, in order of first appearance. Computed once, like digest(): the checks ask for them
        again and again."""
        if self._groups is None:
            by_port = {}
            for consumer in self.consumers:
                if _is_int(consumer.port):
                    by_port.setdefault(consumer.port, []).append(consumer)
            self._groups = [Group(port, members) for port, members in by_port.items()]
        return list(self._groups)

    def group(self, port):
        members = [c for c in self.consumers if c.port == port and _is_int(port)]
        return Group(port, members) if members else None

    def as_dict(self):
        """The host's resolved spec: what the rendered rules and the rollout depend on."""
        return {
            "name": self.name, "backend": self.backend, "platform": self.platform,
            "consumers": [c.as_dict() for c in self.consumers],
            "groups": [g.as_dict() for g in self.groups()],
            "rules": [r.as_dict() for r in self.rules],
            "pf": dict([("anchor", self.anchor)] + sorted(self.pf_options.items())),
            "ipfw": dict(sorted(self.ipfw.items())),
        }

    def canonical(self):
        """_canonical(self.as_dict()), byte for byte, from the consumers' and rules' own texts and pieces
        shared between hosts (the keys in sorted order, as _canonical writes them)."""
        return "".join((
            '{"backend":', _piece(self.backend), ',"consumers":[', ",".join(c.canonical() for c in self.consumers),
            '],"groups":[', ",".join(_group_text(g) for g in self.groups()),
            '],"ipfw":', _piece(tuple(sorted(self.ipfw.items())), dict), ',"name":', _json_text(self.name),
            ',"pf":', _piece((("anchor", self.anchor),) + tuple(sorted(self.pf_options.items())), dict),
            ',"platform":', _piece(self.platform), ',"rules":[', ",".join(r.canonical() for r in self.rules), "]}"))

    def digest(self):
        """sha256 of the host's resolved spec, canonical JSON: the same spec gives the same digest.

        Computed once: a resolved host is not changed after resolve() or host_from_dict() built it,
        and the header, the plan and the render action all ask for it."""
        if self._digest is None:
            canonical = self.canonical()
            import hashlib  # here: loading OpenSSL costs a validation, which never digests, a few milliseconds
            self._digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        return self._digest


class Fleet:
    def __init__(self, hosts, consumers, profiles):
        self.hosts = hosts  # name -> Host, in spec order
        self.consumers = consumers  # name -> (definition dict, path)
        self.profiles = profiles

    def host(self, name):
        return self.hosts.get(name)


def _consumer_for_host(name, definition, override, path):
    fields = dict(CONSUMER_DEFAULTS)
    fields.update(definition)
    for key in ("sockets", "ready_timeout"):
        if key in override:
            fields[key] = override[key]
    port = fields.get("port")
    sockets = fields.get("sockets")
    rc_vars = {}
    for var, value in _dict(fields.get("rc_vars")).items():
        if isinstance(value, str):
            value = value.replace("@PORT@", str(port)).replace("@SOCKETS@", str(sockets))
        rc_vars[var] = value
    options = dict((key, definition[key]) for key in CONSUMER_OPTIONS if key in definition)
    return Consumer(
        name=name, port=port, sockets=sockets, lb=fields.get("lb"), service=fields.get("service"),
        rc_vars=rc_vars, ready_timeout=fields.get("ready_timeout"), reference=fields.get("reference"),
        description=fields.get("description"), path=path, options=options,
        rc_vars_template=dict(_dict(fields.get("rc_vars"))))


def _consumer_refs(entries, base):
    """(name, override, path) for each entry of a consumers list."""
    out = []
    for index, entry in enumerate(_list(entries)):
        if isinstance(entry, str):
            out.append((entry, {}, base + (index,)))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            out.append((entry["name"], entry, base + (index,)))
    return out


_UNSET = object()


def _shared(cache, key, make):
    """make(), or the equal object an earlier host already made for the same key (a resolved Consumer or
    Rule is not changed after resolve(): hosts of one profile share its rules and their consumers)."""
    try:
        found = cache.get(key)
    except TypeError:  # an unhashable value of an invalid spec
        return make()
    if found is None:
        found = cache[key] = make()
    return found


def resolve(data):
    """The resolved Fleet of a (possibly invalid) spec document."""
    data = _dict(data)
    consumers_made, rules_made, texts_made = {}, {}, {}
    consumer_defs = {}
    for name, definition in _dict(data.get("consumers")).items():
        consumer_defs[name] = (_dict(definition), ("consumers", name))
    profiles = _dict(data.get("profiles"))
    top_anchor = _dict(data.get("pf")).get("anchor")
    hosts = {}
    for host_name, host_fields in _dict(data.get("hosts")).items():
        host_fields = _dict(host_fields)
        host = Host(host_name, ("hosts", host_name))
        if isinstance(top_anchor, str):
            host.anchor = top_anchor
            host.field_paths["anchor"] = ("pf", "anchor")
        for key in PF_OPTIONS:
            if key in _dict(data.get("pf")):
                host.pf_options[key] = _dict(data.get("pf"))[key]
                host.field_paths[key] = ("pf", key)
        layers = []
        profile_name = host_fields.get("profile")
        if isinstance(profile_name, str):
            host.profile = profile_name
            if isinstance(profiles.get(profile_name), dict):
                layers.append((profiles[profile_name], ("profiles", profile_name)))
        layers.append((host_fields, host.path))
        refs = {}
        order = []
        for fields, base in layers:
            for key in HOST_SCALARS:
                if key in fields:
                    setattr(host, key, fields[key])
                    host.field_paths[key] = base + (key,)
            anchor = _dict(fields.get("pf")).get("anchor")
            if isinstance(anchor, str):
                host.anchor = anchor
                host.field_paths["anchor"] = base + ("pf", "anchor")
            for key in PF_OPTIONS:
                if key in _dict(fields.get("pf")):
                    host.pf_options[key] = _dict(fields.get("pf"))[key]
                    host.field_paths[key] = base + ("pf", key)
            for key, value in _dict(fields.get("ipfw")).items():
                if key in IPFW_DEFAULTS:
                    host.ipfw[key] = value
                    host.field_paths["ipfw"] = base + ("ipfw",)
            for name, override, path in _consumer_refs(fields.get("consumers"), base + ("consumers",)):
                if name not in refs:
                    order.append(name)
                    refs[name] = (dict(override), path)
                else:
                    merged = dict(refs[name][0])
                    merged.update(override)
                    refs[name] = (merged, path)
            for index, rule in enumerate(_list(fields.get("rules"))):
                if isinstance(rule, dict):
                    host.rules.append(_shared(rules_made, base + ("rules", index), lambda: _rule(
                        rule, base + ("rules", index), consumer_defs)))
        for name in order:
            override, path = refs[name]
            if name in consumer_defs:
                sockets, ready = override.get("sockets", _UNSET), override.get("ready_timeout", _UNSET)
                consumer = _shared(consumers_made, (name, path, sockets, ready), lambda: _consumer_for_host(
                    name, consumer_defs[name][0], override, path))
                if consumer.canonical_text is None:
                    # The same consumer placed elsewhere (another path) has the same resolved text.
                    consumer.canonical_text = texts_made.get((name, repr(sockets), repr(ready)))
                    if consumer.canonical_text is None:
                        consumer.canonical_text = texts_made[(name, repr(sockets), repr(ready))] = consumer.canonical()
                host.consumers.append(consumer)
        hosts[host_name] = host
    return Fleet(hosts, consumer_defs, profiles)


def _rule(fields, path, consumer_defs):
    """A Rule with its divert port: its own, or its consumer's (which no host changes: a host's consumers
    entry overrides sockets and ready_timeout only)."""
    rule = Rule(fields, path)
    if _is_int(rule.port):
        rule.target_port = rule.port
    elif rule.consumer in consumer_defs and _is_int(consumer_defs[rule.consumer][0].get("port")):
        rule.target_port = consumer_defs[rule.consumer][0]["port"]
    return rule


def host_from_dict(resolved):
    """A Host from `Host.as_dict()` output (what the render action returns and the filters take).

    Raises ValueError naming the first missing or malformed field.
    """
    if not isinstance(resolved, dict):
        raise ValueError("expected a resolved host (a mapping from divert.fleet.render's `host`), got %s"
                         % type(resolved).__name__)
    try:
        host = Host(resolved["name"], ("hosts", resolved["name"]))
        host.backend = resolved["backend"]
        host.platform = resolved["platform"]
        host.anchor = resolved.get("pf", {}).get("anchor", DEFAULT_ANCHOR)
        host.pf_options = dict((k, v) for k, v in resolved.get("pf", {}).items() if k in PF_OPTIONS)
        host.ipfw.update(resolved.get("ipfw", {}))
        for item in resolved["consumers"]:
            host.consumers.append(Consumer(
                name=item["name"], port=item["port"], sockets=item["sockets"], lb=item["lb"],
                service=item["service"], rc_vars=dict(item.get("rc_vars", {})),
                ready_timeout=item["ready_timeout"], reference=item.get("reference", False),
                description=item.get("description"), path=host.path + ("consumers", item["name"]),
                options=dict((k, item[k]) for k in CONSUMER_OPTIONS if k in item),
                rc_vars_template=item.get("rc_vars_template")))
        for index, item in enumerate(resolved["rules"]):
            fields = dict(item)
            fields["protocol"] = list(item["protocols"])
            fields.pop("protocols")
            fields["port"] = item["port"]
            rule = Rule(fields, host.path + ("rules", index))
            rule.target_port = item["port"]
            host.rules.append(rule)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError("not a resolved divert.fleet host: missing or malformed field %s" % exc)
    if host.backend not in ("pf", "ipfw"):
        raise ValueError("resolved host %s has backend %r; expected pf or ipfw" % (host.name, host.backend))
    return host
