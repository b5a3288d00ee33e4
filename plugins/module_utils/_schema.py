# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON Schema validation of a fleet spec, as positioned diagnostics. Private to the divert.fleet collection.

`schemas/fleet.schema.json` is the contract. A valid document is confirmed by
jsonschema-rs when it is installed (compiled, fast); any document it rejects,
or every document when it is absent, goes through the `jsonschema` library,
whose errors carry the paths and context we turn into diagnostics: one per
problem, at the offending node (unknown keys at the key), and for
`anyOf` alternatives the cause in the alternative that fits the value's type.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json
import os

from ansible_collections.divert.fleet.plugins.module_utils import _grammar
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import omitted

try:
    import jsonschema_rs
except ImportError:
    jsonschema_rs = None

try:
    # Imported for real only when a document needs explaining (see _full_validator):
    # a valid spec never pays for jsonschema's import.
    import importlib.util
    HAS_JSONSCHEMA = importlib.util.find_spec("jsonschema") is not None
except ImportError:  # pragma: no cover
    HAS_JSONSCHEMA = False

SCHEMA_PATH = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "fleet.schema.json"))

_cache = {}

_TYPE_WORDS = {
    "object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "nothing",
}


def schema():
    if "schema" not in _cache:
        with open(SCHEMA_PATH) as handle:
            _cache["schema"] = json.load(handle)
    return _cache["schema"]


def _fast_validator():
    if "fast" not in _cache:
        fast = None
        if jsonschema_rs is not None:
            try:
                fast = jsonschema_rs.Draft202012Validator(schema())
            except Exception:  # an incompatible build: fall back to jsonschema
                fast = None
        _cache["fast"] = fast
    return _cache["fast"]


def _full_validator():
    if "full" not in _cache:
        import jsonschema
        _cache["full"] = jsonschema.Draft202012Validator(schema())
    return _cache["full"]


# The explanation stops after this many jsonschema errors: a spec of aliases can hold 100,000 wrong
# values, each costing the library a walk; the first ones are what a person fixes first.
MAX_EXPLAINED = 1000


class _Text(str):
    """A string whose repr is bounded: jsonschema formats `repr(instance)` into every message eagerly,
    and an aliased 20 KB string in 20,000 places would cost gigabytes."""
    __slots__ = ()

    def __repr__(self):
        return _grammar.quote(str(self))


class _List(list):
    """A list that may hold only the first of its items (see _list_limits); `length` is the list's own,
    for "the list has N items"."""
    __slots__ = ("length",)

    def __repr__(self):
        return "a list of %d items" % self.length


class _Map(dict):
    __slots__ = ()

    def __repr__(self):
        return "a mapping of %d keys" % len(self)


def _list_limits():
    """key -> how many items of a list under that key are explained: its largest maxItems in the schema
    plus one, so that "too many items" is still found; items past that add nothing a person can act on
    before shortening the list. Lists under other keys: the schema's largest maxItems plus one."""
    if "limits" not in _cache:
        limits = {}
        found = [0]

        def largest(node):
            node = _resolve(node)
            if not isinstance(node, dict):
                return 0
            own = node.get("maxItems", 0)
            return max([own] + [largest(branch) for branch in node.get("anyOf", [])])

        def walk(node):
            if isinstance(node, dict):
                for name, sub in node.get("properties", {}).items():
                    limit = largest(sub)
                    if limit:
                        limits[name] = max(limits.get(name, 0), limit + 1)
                found[0] = max(found[0], node.get("maxItems", 0))
                for sub in node.values():
                    walk(sub)
            elif isinstance(node, list):
                for sub in node:
                    walk(sub)
        walk(schema())
        _cache["limits"] = (limits, found[0] + 1)
    return _cache["limits"]


def _for_explaining(value, memo, key=None):
    """The same data with bounded reprs and bounded lists; shared (aliased) values stay shared."""
    if isinstance(value, list):
        limits, default = _list_limits()
        limit = limits.get(key, default)
        memo_key = (id(value), limit)
    else:
        memo_key = (id(value), None)
    if memo_key in memo:
        return memo[memo_key][1]
    if isinstance(value, str):
        out = _Text(value)
    elif isinstance(value, list):
        out = _List()
        out.length = len(value)
        memo[memo_key] = (value, out)  # before the items: a list may hold itself (data from a caller)
        out.extend(_for_explaining(item, memo) for item in value[:limit])
        return out
    elif isinstance(value, dict):
        out = _Map()
        memo[memo_key] = (value, out)
        for name, item in value.items():
            out[_for_explaining(name, memo)] = _for_explaining(item, memo, name)
        return out
    else:
        out = value
    memo[memo_key] = (value, out)  # the value is kept so that its id is not reused meanwhile
    return out


# schema pattern -> the _grammar kind it is, so a pattern failure gets the grammar's message.
_PATTERN_KINDS = dict((_grammar.schema_pattern(kind), kind) for kind in _grammar.KINDS)


def _describe(value):
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _grammar.quote(value)


def _type_of(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _resolve(node):
    """Follow a local $ref once (the schema only uses '#/$defs/...')."""
    ref = node.get("$ref") if isinstance(node, dict) else None
    if ref and ref.startswith("#/"):
        target = schema()
        for part in ref[2:].split("/"):
            target = target[part]
        return target
    return node


def _allowed_keys(subschema):
    keys = set(subschema.get("properties", {}))
    keys.update(_resolve(subschema).get("properties", {}) if "$ref" in subschema else ())
    return sorted(keys)


def _description(subschema):
    text = subschema.get("description") or _resolve(subschema).get("description") or ""
    return text.rstrip(".")


def _accepts_type(subschema, value):
    subschema = _resolve(subschema)
    wanted = subschema.get("type")
    if wanted is None:
        if "anyOf" in subschema:
            return any(_accepts_type(branch, value) for branch in subschema["anyOf"])
        return True
    kind = _type_of(value)
    wanted = wanted if isinstance(wanted, list) else [wanted]
    return kind in wanted or (kind == "integer" and "number" in wanted)


def _pick_cause(error):
    """For anyOf/oneOf: the error inside the alternative that fits the value's type, deepest first."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches = error.validator_value
        if all(isinstance(b, dict) and list(b) == ["required"] for b in branches):
            return error  # "one of these keys is needed": say that, not the first branch's complaint
        fitting = [sub for sub in error.context
                   if sub.relative_schema_path and _accepts_type(branches[sub.relative_schema_path[0]], error.instance)]
        if not fitting:
            return error
        fitting.sort(key=lambda sub: (-len(sub.absolute_path), sub.validator == "type"))
        chosen = fitting[0]
        if chosen.validator == "type" and len(chosen.absolute_path) == len(error.absolute_path):
            return error
        error = chosen
    return error


def _message(error):
    """What is wrong and what would be right, for one jsonschema error."""
    kind = error.validator
    value = error.instance
    sub = error.schema if isinstance(error.schema, dict) else {}
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        text = "expected %s, got %s" % (" or ".join(_TYPE_WORDS.get(w, w) for w in wanted), _describe(value))
        desc = _description(sub)
        return "%s (%s)" % (text, desc) if desc else text
    if kind == "required":
        missing = [key for key in error.validator_value if isinstance(value, dict) and key not in value]
        return "missing key %s; %s" % (", ".join(json.dumps(m) for m in missing) or json.dumps(error.validator_value),
                                       _required_hint(sub, missing))
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = sub.get("minimum"), sub.get("maximum")
        desc = _description(sub)
        bounds = "%s..%s" % (low, high) if low is not None and high is not None else (
            ">= %s" % low if low is not None else "<= %s" % high)
        return "%s is out of range: %s" % (_describe(value), desc or "allowed: %s" % bounds) if (
            desc and bounds in desc) else "%s is out of range; allowed: %s%s" % (
            _describe(value), bounds, " (%s)" % desc if desc else "")
    if kind == "pattern":
        grammar_kind = _PATTERN_KINDS.get(error.validator_value)
        if grammar_kind is not None:
            return _grammar.shape_problem(grammar_kind, value) or "%s does not match" % _describe(value)
        desc = _description(sub)
        return "%s is not allowed here: %s" % (_describe(value), desc or "it must match %s" % error.validator_value)
    if kind == "enum":
        return "%s is not one of %s" % (_describe(value), ", ".join(_describe(v) for v in error.validator_value))
    if kind == "const":
        return "%s must be %s" % (_describe(value), _describe(error.validator_value))
    if kind in ("minItems", "maxItems"):
        return "the list has %d items; %s %d" % (
            getattr(value, "length", len(value)), "at least" if kind == "minItems" else "at most",
            error.validator_value)
    if kind in ("minProperties", "maxProperties"):
        what = _description(sub) or "this mapping"
        return "%s needs at least %d entry" % (what, error.validator_value) if kind == "minProperties" else \
            "too many entries; at most %d" % error.validator_value
    if kind in ("maxLength", "minLength"):
        return "the text %s is %d characters; %s %d" % (
            _describe(value), len(value), "at most" if kind == "maxLength" else "at least", error.validator_value)
    if kind in ("anyOf", "oneOf"):
        branches = error.validator_value
        if all(isinstance(b, dict) and list(b) == ["required"] for b in branches):
            names = [b["required"][0] for b in branches]
            return "a rule needs %s: the consumer it diverts to, or the divert port" % " or ".join(
                json.dumps(n) for n in names)
        desc = _description(sub)
        return "%s is not valid here%s" % (_describe(value), ": %s" % desc if desc else "")
    return error.message[:200]


def _required_hint(sub, missing):
    props = sub.get("properties", {})
    hints = []
    for key in missing:
        desc = _description(props.get(key, {}))
        if desc:
            hints.append("%s: %s" % (key, desc))
    return "; ".join(hints) if hints else "add it"


def _unknown_keys(error, doc, path):
    """One diagnostic per key that the schema does not define, at the key."""
    allowed = _allowed_keys(error.schema)
    out = []
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key in instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1) if len(key) <= _grammar.QUOTE_MAX else []
        hint = "did you mean %s?" % json.dumps(close[0]) if close else "allowed keys: %s" % ", ".join(allowed)
        out.append(doc.diagnostic("schema", path + (key,), "unknown key %s; %s" % (_grammar.quote(key), hint),
                                  key=True))
    return out


def validate(doc):
    """Diagnostics for every schema violation in `doc.data` (a loaded Document)."""
    data = doc.data
    fast = _fast_validator()
    refused = False
    if fast is not None:
        try:
            if fast.is_valid(data):
                return []
            refused = True
        except Exception:  # a value the compiled validator cannot take; let jsonschema decide
            pass
    if not HAS_JSONSCHEMA:
        message = ("the spec does not match the schema, and the jsonschema library that explains why is not "
                   "installed (pip install jsonschema)")
        return [doc.diagnostic("schema", (), message)]
    out = []
    explained = 0
    memo = {}
    for error in _full_validator().iter_errors(_for_explaining(data, memo)):
        if explained == MAX_EXPLAINED:
            out.append(_stopped(doc, error))
            break
        explained += 1
        out.extend(_diagnose(error, doc))
    if refused and not out:
        # The verdict is the compiled validator's: a spec it refuses is never reported valid because the
        # explaining library sees nothing (how a final newline once passed every `$` pattern).
        out.append(doc.diagnostic("schema", (), "the spec does not match the schema (jsonschema-rs refuses it), but "
                                                "the jsonschema library finds no single place to point at; check "
                                                "every value against schemas/fleet.schema.json"))
    return out


def _stopped(doc, error):
    """Where the explanation stopped: the count of what follows is not known, only that there is more."""
    first = doc.diagnostic("schema", tuple(error.absolute_path), "")
    return omitted(first, 1, MAX_EXPLAINED, at_least=True)


def _diagnose(error, doc):
    error = _pick_cause(error)
    path = tuple(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties") and error.validator_value is False:
        return _unknown_keys(error, doc, path)
    if error.validator == "propertyNames" or (
            len(error.absolute_schema_path) > 1 and "propertyNames" in error.absolute_schema_path):
        key = error.instance
        return [doc.diagnostic("schema", path + (key,), "key %s: %s" % (_describe(key), _message(error)), key=True)]
    if error.validator == "pattern" and error.schema_path and "propertyNames" in list(error.schema_path):
        key = error.instance
        return [doc.diagnostic("schema", path + (key,), _message(error), key=True)]
    return [doc.diagnostic("schema", path, _message(error))]
