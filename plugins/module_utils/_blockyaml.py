# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fast reader for the block-YAML subset fleet specs are written in. Private to the divert.fleet collection.

The subset: block mappings and sequences indented with spaces, flow lists and
mappings on one line, plain scalars on one line, single- and double-quoted
scalars on one line (no escapes in double quotes), comments. Plain scalars
are resolved by PyYAML's own YAML 1.1 resolver, so `yes`, `~` and `010` mean
what they mean to the YAML path.

It reads only documents it is sure about: a valid document of the subset gives
the same values and the same (line, column) of every node and key as
composing it with PyYAML and walking the nodes (`_loader._Walker`). Anything
else - an anchor, a tag, a multi-line scalar, an escape, a duplicate key, a
number form other than plain decimal, a line it does not expect - raises
`Unsupported`, and the caller reads the document with PyYAML instead, which
reports what there is to report. So every diagnostic comes from one place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# PyYAML's implicit resolvers (yaml/resolver.py, unchanged since 2006), as a table of first character ->
# [(tag, regexp)] like Resolver.yaml_implicit_resolvers; test_blockyaml checks them against PyYAML's own.
# Kept here so that a spec in the subset is read without importing PyYAML at all.
_RESOLVERS = (
    ("tag:yaml.org,2002:bool", r'''^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$''', "yYnNtTfFoO"),
    ("tag:yaml.org,2002:float", r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$''', "-+0123456789."),
    ("tag:yaml.org,2002:int", r'''^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$''', "-+0123456789"),
    ("tag:yaml.org,2002:merge", r'^(?:<<)$', "<"),
    ("tag:yaml.org,2002:null", r'''^(?: ~
                    |null|Null|NULL
                    | )$''', ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:timestamp", r'''^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$''', "0123456789"),
    ("tag:yaml.org,2002:value", r'^(?:=)$', "="),
    ("tag:yaml.org,2002:yaml", r'^(?:!|&|\*)$', "!&*"),
)


def _implicit():
    table = {}
    for tag, pattern, first in _RESOLVERS:
        regexp = re.compile(pattern, re.X if "\n" in pattern else 0)
        for char in first:
            table.setdefault(char, []).append((tag, regexp))
    return table


class _Table(dict):
    """_implicit(), compiled when first needed: most specs need none of it (see _resolve)."""

    def get(self, key, default=None):
        if not self:
            self.update(_implicit())
        return dict.get(self, key, default)

    def items(self):
        self.get(None)
        return dict.items(self)


_IMPLICIT = _Table()
# Every character of a text that a resolver other than bool and null can match: a plain scalar with another
# character (a '/', most letters) is text.
_NUMBER_LIKE = frozenset("0123456789_.:+-eExXabcdfABCDFoOinINtTzZ \t<=!&*")
# SafeConstructor.bool_values
_BOOLS = {"yes": True, "no": False, "true": True, "false": False, "on": True, "off": False}
# What the bool and null resolvers match, and the first characters of what the others can match.
_BOOLS_TEXT = frozenset(w for word in _BOOLS for w in (word, word.capitalize(), word.upper()))
_NULLS_TEXT = frozenset(("~", "null", "Null", "NULL"))
_FIRST_NOT_TEXT = frozenset("-+0123456789.<=!&*")

# Deeper documents are left to the YAML path, which refuses them past _loader.MAX_DEPTH.
MAX_DEPTH = 48
# Longer keys, plain or quoted, in a block or a flow mapping, are left to the YAML path (it refuses simple keys
# of more than 1024 characters).
MAX_KEY = 1000
# Longer numbers are left to the YAML path (_loader.MAX_NUMBER_CHARACTERS).
MAX_NUMBER = 32

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


class Unsupported(Exception):
    """The text is outside the subset this reader is sure about: read it with PyYAML. `line`: the 1-based
    line where the reader stopped."""

    line = 1


_UNSUPPORTED = Unsupported()

# A mapping key and its colon: plain (a conservative character set), or quoted without escapes.
_KEY = re.compile(r"(?:([A-Za-z0-9_][A-Za-z0-9_./@+-]*)|'([^'\n]*)'|\"([^\"\\\n]*)\"):(?: +|$)")
# A plain scalar inside a flow collection: it ends at ',', ']', '}' or a ':' that ends a key.
_FLOW_PLAIN = re.compile(r"(?:[A-Za-z0-9_./+=~^$()<]|-(?=[A-Za-z0-9_./]))(?:[A-Za-z0-9_./+=~^$()<>@%!&*| -]|:(?=[^ ,\]}]))*")
# The first character of a block plain scalar: not an indicator (`>` starts a folded scalar, and cannot start
# a plain one in a flow collection either).
_BLOCK_PLAIN_START = re.compile(r"[A-Za-z0-9_./+=~^$()<]|-(?=[A-Za-z0-9_./])")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
# Tabs, carriage returns, the line breaks of YAML 1.1 (U+0085, U+2028, U+2029), a byte order mark, and what
# PyYAML's reader refuses as not printable: the YAML path reads or refuses them.
_OUTSIDE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def _resolve(text):
    """The value of a plain scalar as PyYAML's resolver and _loader._Walker give it, or Unsupported."""
    if _DECIMAL.match(text):  # the int resolver matches it, and no resolver before it does
        if len(text) > MAX_NUMBER:
            raise _UNSUPPORTED
        return int(text)
    if text in _BOOLS_TEXT:
        return _BOOLS[text.lower()]
    if text in _NULLS_TEXT:
        return None
    if text[:1] not in _FIRST_NOT_TEXT or not _NUMBER_LIKE.issuperset(text):
        return text
    tag = _STR
    for tag_, regexp in _IMPLICIT.get(text[:1] if text else "", []) + _IMPLICIT.get(None, []):
        if regexp.match(text):
            tag = tag_
            break
    if tag == _STR:
        return text
    if tag == _INT and len(text) <= MAX_NUMBER and _DECIMAL.match(text):
        return int(text)
    if tag == _BOOL:
        return _BOOLS[text.lower()]
    if tag == _NULL:
        return None
    raise _UNSUPPORTED  # a float, a timestamp, a YAML 1.1 number form, a merge key: the YAML path says what


class _Discard(dict):
    """Positions not asked for: nothing is kept."""
    __slots__ = ()

    def __setitem__(self, key, value):
        pass


class _Reader:
    def __init__(self, text, values, keys, max_depth):
        # The depth a collection may be at: its children, scalars too, are one deeper, and the YAML path
        # refuses any node deeper than max_depth.
        self.max_depth = MAX_DEPTH if max_depth is None else min(max_depth - 1, MAX_DEPTH)
        self.lines = text.split("\n")
        self.count = len(self.lines)
        self.i = 0
        self.values = _Discard() if values is None else values
        self.keys = _Discard() if keys is None else keys
        self.cache = {}

    def plain(self, text):
        try:
            return self.cache[text]
        except KeyError:
            value = self.cache[text] = _resolve(text)
            return value

    def skip(self):
        """Indent of the next line with content (moving there), or -1 at the end."""
        lines = self.lines
        i = self.i
        while i < self.count:
            line = lines[i]
            stripped = line.lstrip(" ")
            if stripped and stripped[0] != "#":
                self.i = i
                return len(line) - len(stripped)
            i += 1
        self.i = i
        return -1

    # --- block collections ----------------------------------------------------------------------

    def document(self):
        if self.skip() != 0:
            raise _UNSUPPORTED
        line = self.lines[self.i]
        if not _KEY.match(line):
            raise _UNSUPPORTED  # a list, a scalar, a directive, `---`: the YAML path
        data = self.mapping(0, (), 0)
        if self.skip() >= 0:
            raise _UNSUPPORTED
        return data

    def block(self, indent, path, depth):
        """The block node on the current line, at `indent`."""
        line = self.lines[self.i]
        if line.startswith("-", indent) and line[indent + 1:indent + 2] in (" ", ""):
            return self.sequence(indent, path, depth, False)
        if _KEY.match(line, indent):
            return self.mapping(indent, path, depth)
        raise _UNSUPPORTED  # a scalar on a line of its own may go on over several lines

    def mapping(self, column, path, depth):
        """A block mapping whose first key is on the current line at `column`, the others on lines indented so."""
        if depth > self.max_depth:
            raise _UNSUPPORTED
        lines = self.lines
        keys = self.keys
        result = {}
        self.values[path] = (self.i + 1, column + 1)
        first = True
        while True:
            if first:
                first = False
            else:
                indent = self.skip()
                if indent < column:
                    return result
                if indent > column:
                    raise _UNSUPPORTED
            line = lines[self.i]
            match = _KEY.match(line, column)
            if match is None:
                raise _UNSUPPORTED
            key = match.group(1)
            if key is None:
                key = match.group(2) if match.group(2) is not None else match.group(3)
            if len(key) > MAX_KEY:
                raise _UNSUPPORTED
            if key in result:
                raise _UNSUPPORTED  # the YAML path reports the duplicate
            key_path = path + (key,)
            keys[key_path] = (self.i + 1, column + 1)
            end = match.end()
            result[key] = self.value(line, end, line.rfind(":", column, end) + 1, key_path, depth + 1, column, True)
        return result  # pragma: no cover

    def value(self, line, start, colon_end, path, depth, column, in_mapping):
        """The value after a key's colon (or a list item's dash) at `start` on the current line; `column`: the
        indent of the collection it belongs to."""
        if start < len(line) and line[start] != "#":
            value = self.inline(line, start, path, depth)
            self.i += 1
            return value
        # Nothing more on the line: the value is on the lines below, or it is null.
        mark = (self.i + 1, colon_end + 1)
        self.i += 1
        indent = self.skip()
        if indent > column:
            return self.block(indent, path, depth)
        if in_mapping and indent == column:
            line = self.lines[self.i]
            if line.startswith("-", indent) and line[indent + 1:indent + 2] in (" ", ""):
                return self.sequence(indent, path, depth, True)
        if not in_mapping:
            raise _UNSUPPORTED  # an empty list item
        self.values[path] = mark
        return None

    def sequence(self, column, path, depth, indentless):
        """A block sequence whose dashes are at `column`; `indentless`: a mapping's value at the mapping's indent,
        which ends at the mapping's next key."""
        if depth > self.max_depth:
            raise _UNSUPPORTED
        lines = self.lines
        result = []
        self.values[path] = (self.i + 1, column + 1)
        while True:
            indent = self.skip()
            if indent < column:
                return result
            if indent > column:
                raise _UNSUPPORTED
            line = lines[self.i]
            if not (line.startswith("-", column) and line[column + 1:column + 2] in (" ", "")):
                if indentless:
                    return result
                raise _UNSUPPORTED
            start = column + 1
            length = len(line)
            while start < length and line[start] == " ":
                start += 1
            item_path = path + (len(result),)
            if start < length and line[start] != "#":
                if line.startswith("- ", start) or line.endswith("-") and start == length - 1:
                    raise _UNSUPPORTED  # a list in a list, compact
                if _KEY.match(line, start):
                    result.append(self.mapping(start, item_path, depth + 1))
                    continue
            result.append(self.value(line, start, column + 1, item_path, depth + 1, column, False))

    # --- values on one line ---------------------------------------------------------------------

    def inline(self, line, start, path, depth):
        """A flow collection, a quoted or a plain scalar from `start` to the end of the line (or a comment)."""
        char = line[start]
        if char in "[{":
            value, end = self.flow(line, start, path, depth)
        elif char in "'\"":
            value, end = self.quoted(line, start, path)
        else:
            end = line.find(" #", start)
            text = (line[start:] if end < 0 else line[start:end]).rstrip(" ")
            if (not _BLOCK_PLAIN_START.match(text) or "#" in text or "\t" in text or ": " in text
                    or text.endswith(":")):
                raise _UNSUPPORTED
            self.values[path] = (self.i + 1, start + 1)
            return self.plain(text)
        rest = line[end:].lstrip(" ")
        if rest and (rest[0] != "#" or end == len(line) - len(rest)):
            raise _UNSUPPORTED  # more after the value, or a '#' right after it
        return value

    def quoted(self, line, start, path):
        """A quoted scalar on one line: (text, index after the closing quote)."""
        quote = line[start]
        self.values[path] = (self.i + 1, start + 1)
        if quote == '"':
            end = line.find('"', start + 1)
            if end < 0 or "\\" in line[start + 1:end]:
                raise _UNSUPPORTED  # escapes, or a scalar that goes on to the next line
            return line[start + 1:end], end + 1
        parts = []
        position = start + 1
        while True:
            end = line.find("'", position)
            if end < 0:
                raise _UNSUPPORTED
            parts.append(line[position:end])
            if line.startswith("''", end):
                parts.append("'")
                position = end + 2
                continue
            return "".join(parts), end + 1

    def flow(self, line, start, path, depth):
        """A flow list or mapping that closes on the same line: (value, index after it)."""
        if depth > self.max_depth:
            raise _UNSUPPORTED
        self.values[path] = (self.i + 1, start + 1)
        closing = "]" if line[start] == "[" else "}"
        result = [] if closing == "]" else {}
        position = _space(line, start + 1)
        if line.startswith(closing, position):
            return result, position + 1
        while True:
            if closing == "]":
                value, position = self.flow_item(line, position, path + (len(result),), depth + 1)
                result.append(value)
            else:
                key, key_column, position = self.flow_key(line, position)
                if key in result:
                    raise _UNSUPPORTED  # the YAML path reports the duplicate
                item_path = path + (key,)
                self.keys[item_path] = (self.i + 1, key_column + 1)
                value, position = self.flow_item(line, position, item_path, depth + 1)
                result[key] = value
            position = _space(line, position)
            char = line[position:position + 1]
            if char == ",":
                position = _space(line, position + 1)
                if line[position:position + 1] in ("]", "}", ",", ""):
                    raise _UNSUPPORTED  # a trailing comma, or a collection that goes on to the next line
                continue
            if char == closing:
                return result, position + 1
            raise _UNSUPPORTED

    def flow_key(self, line, position):
        """(key, its column, index of its value) of a flow mapping entry `key: value`."""
        match = _KEY.match(line, position)
        if match is None or match.end() == len(line) or line[match.end() - 1] != " ":
            raise _UNSUPPORTED
        key = match.group(1)
        if key is None:
            key = match.group(2) if match.group(2) is not None else match.group(3)
        if len(key) > MAX_KEY:
            raise _UNSUPPORTED
        return key, position, match.end()

    def flow_item(self, line, position, path, depth):
        char = line[position:position + 1]
        if char in ("[", "{"):
            return self.flow(line, position, path, depth)
        if char in ("'", '"'):
            return self.quoted(line, position, path)
        match = _FLOW_PLAIN.match(line, position)
        if match is None:
            raise _UNSUPPORTED
        text = match.group().rstrip(" ")
        self.values[path] = (self.i + 1, position + 1)
        return self.plain(text), match.end()


def _space(line, position):
    length = len(line)
    while position < length and line[position] == " ":
        position += 1
    return position


def read(text, values, keys, max_depth=None):
    """The data of a spec text, filling values and keys (path -> (line, column)) as _loader._Walker does
    (None: no positions); Unsupported when the text is not certainly of the subset, or has a node deeper than
    max_depth (the root is at depth 0; None: collections MAX_DEPTH deep)."""
    outside = _OUTSIDE.search(text)
    if outside:
        error = Unsupported()
        error.line = text.count("\n", 0, outside.start()) + 1
        raise error
    reader = _Reader(text, values, keys, max_depth)
    try:
        return reader.document()
    except Unsupported:
        # Raising the one instance again would chain each traceback to the last, and keep every reader (and
        # the text it read) alive with them.
        _UNSUPPORTED.__traceback__ = None
        error = Unsupported()
        error.line = min(reader.i, reader.count - 1) + 1
        raise error
