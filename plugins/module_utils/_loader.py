# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading a fleet spec with the position of every node. Private to the divert.fleet collection.

A spec in the plain block-YAML subset specs are written in is read by `_blockyaml`,
which gives the same values and positions without building YAML nodes (positions
are read only when a diagnostic asks for one). Anything outside that subset, and
every spec with something for the loader to report (a duplicate key, a YAML 1.1
number...), is read the YAML way below; DIVERT_FLEET_LOADER=yaml reads every spec
so. The YAML is composed (with libyaml's CSafeLoader when present, the pure-Python
SafeLoader otherwise) and the node graph is turned into plain data by our own
walk, which:
- records the line and column of every value and every mapping key, keyed by
  the path of keys and indexes that JSON Pointers are made from;
- refuses duplicate keys (PyYAML silently keeps the last one);
- bounds nesting depth and alias expansion, so a "billion laughs" document
  costs a diagnostic, not the machine's memory;
- refuses, before YAML reads anything, the characters a reviewer cannot see
  (one scan of the text, `_grammar.INVISIBLE_RE`): YAML 1.1 reads U+0085,
  U+2028, U+2029 and a lone carriage return as line breaks, so a comment in an
  editor or a diff can hide a line that YAML reads; bidirectional controls
  reorder what is shown;
- refuses YAML 1.1 number forms that change a value (base 60: `20:21` is
  1221), hide it (hexadecimal, octal, binary, `_`) or change its type (8010.0),
  and numbers too long to read, each with what to write instead.
Problems become diagnostics; only an unreadable, oversized or non-regular file
raises `SpecFileError` (the command line exits 2 for it). Nothing here opens a
FIFO or a device: the file is examined before it is read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import math
import os
import re
import stat

from ansible_collections.divert.fleet.plugins.module_utils import _blockyaml, _grammar
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import (
    MAX_PER_CODE, Diagnostic, omitted, pointer)


class _NotRaisedYet(Exception):
    """Stands for PyYAML's errors until PyYAML is imported: none can be raised before."""


class _MarkedNotRaisedYet(_NotRaisedYet):
    """Stands for yaml.MarkedYAMLError, a YAMLError, as _NotRaisedYet does for YAMLError."""


# PyYAML is imported by _import_yaml(), when a spec needs it: one in the plain subset never does.
yaml = None
_YamlLoader = None
_YAMLError, _MarkedYAMLError = _NotRaisedYet, _MarkedNotRaisedYet


def _import_yaml():
    global yaml, _YamlLoader, _YAMLError, _MarkedYAMLError  # pylint: disable=global-statement
    if yaml is None:
        import yaml as module
        if _YamlLoader is None:
            try:
                from yaml import CSafeLoader as _YamlLoader
            except ImportError:  # libyaml not compiled in
                from yaml import SafeLoader as _YamlLoader
        _YAMLError, _MarkedYAMLError = module.YAMLError, module.MarkedYAMLError
        yaml = module
    return yaml


# The bounds a spec is read within; each is a `divert-fleet` option (Limits below). A generated fleet of
# 50,000 hosts like the benchmark's is 8.8 MB and about 975,000 values (commas, colons and lines).
MAX_MIB = 64
MAX_VALUES = 2000000
# The YAML path builds a node of about a kilobyte for every value: a spec outside the plain subset
# (anchors, tags, multi-line scalars...) or with something to report is read so only up to this many.
MAX_YAML_VALUES = 200000
MAX_DEPTH = 64
MAX_ALIAS_EXPANSION = 100000
MAX_BYTES = MAX_MIB * 1024 * 1024
# Which reader: "auto" (the subset reader, the YAML path for the rest) or "yaml" (the YAML path only).
LOADER = os.environ.get("DIVERT_FLEET_LOADER", "auto")


class Limits:
    """The bounds of one read, each named by the command-line option that sets it."""

    OPTIONS = (("max_mib", "--max-mib"), ("max_values", "--max-values"), ("max_yaml_values", "--max-yaml-values"),
               ("max_depth", "--max-depth"), ("max_aliases", "--max-aliases"))

    def __init__(self, max_mib=None, max_values=None, max_yaml_values=None, max_depth=None, max_aliases=None):
        self.max_mib = MAX_MIB if max_mib is None else max_mib
        self.max_values = MAX_VALUES if max_values is None else max_values
        self.max_yaml_values = MAX_YAML_VALUES if max_yaml_values is None else max_yaml_values
        self.max_depth = MAX_DEPTH if max_depth is None else max_depth
        self.max_aliases = MAX_ALIAS_EXPANSION if max_aliases is None else max_aliases

    @property
    def max_bytes(self):
        return int(self.max_mib * 1024 * 1024)


DEFAULT_LIMITS = Limits()

# A number longer than this is not read (int() of thousands of digits is slow, and refused past
# 4300): no number of a spec needs more than 5 digits.
MAX_NUMBER_CHARACTERS = 32

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# Tags whose values stay as their source text: a date is not a type the spec uses,
# and plain text keeps every value JSON-serialisable.
_AS_TEXT = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary", "tag:yaml.org,2002:value")


class SpecFileError(Exception):
    """The file cannot be read at all (missing, unreadable, too large)."""


class _Abort(Exception):
    def __init__(self, diagnostic):
        Exception.__init__(self, diagnostic.message)
        self.diagnostic = diagnostic


class Document:
    """Loaded spec data with positions.

    `data` is plain JSON-like data (dict, list, str, int, float, bool, None),
    or None when the file could not be composed. Paths are tuples of keys and
    indexes; `position(path)` gives the 1-based (line, column) of the node at
    that path, or of its nearest ancestor that has one.
    """

    def __init__(self, file, data=None, values=None, keys=None, diagnostics=None, text=""):
        self.file = file
        self.data = data
        self.values = values or {}
        self.keys = keys or {}
        self.diagnostics = diagnostics or []
        self.text = text
        self.positions_known = True
        # The text whose positions are still to be read (by the subset reader, which read its values
        # without them): a valid spec never asks for one, and positions are most of a read's memory.
        self.unread_positions = None

    def positions(self):
        """(values, keys): path -> (line, column) of every node and of every mapping key."""
        if self.unread_positions is not None:
            _blockyaml.read(self.unread_positions, self.values, self.keys)
            self.unread_positions = None
        return self.values, self.keys

    def position(self, path, key=False):
        if not self.positions_known:
            return (None, None)
        if self.unread_positions is not None:
            self.positions()
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diagnostic(self, code, path, message, key=False):
        line, column = self.position(path, key=key)
        return Diagnostic(code, message, path=pointer(path), file=self.file, line=line, column=column)


_KINDS_OF_FILE = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode):
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, what in _KINDS_OF_FILE:
        if test(mode):
            return what
    return "not a regular file"


def read_spec_bytes(path, limits=None):
    """The file's bytes, or SpecFileError with a message that names it.

    Only a regular file is read: a FIFO would block the reader until a writer comes (forever, in
    a pipeline), a device may never end. The file is examined first, then opened without blocking
    and examined again, so that one swapped in between is refused too."""
    limits = limits or DEFAULT_LIMITS
    try:
        what = _not_regular(os.stat(path).st_mode)
        if what is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
            try:
                what = _not_regular(os.fstat(fd).st_mode)
                if what is None:
                    with os.fdopen(fd, "rb") as handle:
                        fd = None
                        raw = handle.read(limits.max_bytes + 1)
            finally:
                if fd is not None:
                    os.close(fd)
    except (IOError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if getattr(exc, "errno", None) == errno.EISDIR:
            reason = "it is a directory"
        raise SpecFileError("%s: cannot read the fleet spec: %s" % (path, reason))
    if what is not None:
        raise SpecFileError("%s: cannot read the fleet spec: it is %s, not a regular file; give the path of the "
                            "spec file itself" % (path, what))
    if len(raw) > limits.max_bytes:
        raise SpecFileError(
            "%s: the file is larger than %s MiB (--max-mib); a fleet spec of 50,000 hosts is about 9 MiB - is this "
            "the right file? If it is, raise --max-mib" % (path, _number(limits.max_mib)))
    return raw


_LINE_BREAKS = "\r\x85\u2028\u2029"


def _invisible_message(char):
    name = _grammar.char_name(char)
    code = ord(char)
    if char in _LINE_BREAKS:
        what = ("a carriage return that does not end a line" if char == "\r" else name)
        return ("%s: YAML 1.1 reads it as a line break, but an editor or a diff shows what follows on the same "
                "line (a comment can hide a line of the spec behind it); remove it" % what)
    if any(low <= code <= high for low, high in _grammar.BIDI_RANGES):
        return ("%s: a bidirectional control changes the order in which an editor or a diff shows the text, so "
                "what a reviewer reads is not what YAML reads; remove it" % name)
    return "%s: a control character, invisible in an editor or a diff; remove it" % name


def _scan_invisible(text, file):
    """invisible-character diagnostics for text, at most MAX_PER_CODE of them and a count of the rest."""
    out = []
    line, line_start, scanned = 1, 0, 0
    matches = _grammar.INVISIBLE_RE.finditer(text)
    for match in matches:
        offset = match.start()
        line += text.count("\n", scanned, offset)
        newline = text.rfind("\n", scanned, offset)
        if newline >= 0:
            line_start = newline + 1
        scanned = offset
        diag = Diagnostic("invisible-character", _invisible_message(match.group()[0]), file=file,
                          line=line, column=offset - line_start + 1)
        if len(out) < MAX_PER_CODE:
            out.append(diag)
            continue
        out.append(omitted(diag, 1 + sum(1 for _rest in matches)))
        break
    return out


def _decode(raw, file):
    """Text of the file, or a yaml-syntax diagnostic at the first bad byte."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        column = nul - (raw.rfind(b"\n", 0, nul) + 1) + 1
        raise _Abort(Diagnostic(
            "yaml-syntax", "the file contains a NUL byte: it is binary, not a YAML fleet spec",
            file=file, line=line, column=column))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Abort(Diagnostic(
            "yaml-syntax",
            "byte 0x%02x is not valid UTF-8; save the spec as UTF-8" % raw[exc.start],
            file=file, line=line, column=column))


def _number(value):
    return ("%d" % value) if float(value).is_integer() else ("%g" % value)


class _Walker:
    def __init__(self, doc, loader, limits):
        self.doc = doc
        self.loader = loader
        self.values = doc.values
        self.keys = doc.keys
        self.built = set()
        self.reported = set()  # ids of key nodes already reported as duplicates
        self.max_depth = limits.max_depth
        self.max_aliases = limits.max_aliases
        self.budget = limits.max_aliases

    def abort(self, node, path, message, code="yaml-syntax"):
        mark = node.start_mark
        raise _Abort(Diagnostic(code, message, path=pointer(path), file=self.doc.file,
                                line=mark.line + 1, column=mark.column + 1))

    def walk(self, node, path, depth):
        if depth > self.max_depth:
            self.abort(node, path, "the document nests deeper than %d levels (--max-depth; a fleet spec needs fewer "
                                   "than 10); is an alias referring to itself?" % self.max_depth)
        node_id = id(node)
        if node_id in self.built:
            self.budget -= 1
            if self.budget < 0:
                self.abort(node, path, "aliases expand to more than %d extra nodes (--max-aliases); a fleet spec "
                                       "does not need this many (a \"billion laughs\" document?)" % self.max_aliases)
        else:
            self.built.add(node_id)
        mark = node.start_mark
        self.values[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self.abort(node, path, "unsupported YAML tag %s; use a plain list" % node.tag)
            return [self.walk(child, path + (index,), depth + 1) for index, child in enumerate(node.value)]
        if node.tag != _MAP:
            self.abort(node, path, "unsupported YAML tag %s; use a plain mapping" % node.tag)
        return self.mapping(node, path, depth)

    def scalar(self, node, path):
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag in (_INT, _FLOAT):
            return self.number(node, path)
        if tag in (_BOOL, _NULL):
            try:
                return self.loader.yaml_constructors[tag](self.loader, node)
            except (KeyError, ValueError, TypeError, AttributeError):
                self.abort(node, path, "%s is tagged %s but is not one; remove the tag" % (
                    _grammar.quote(node.value), tag.rsplit(":", 1)[-1]))
        if tag in _AS_TEXT:
            return node.value
        self.abort(node, path, "unsupported YAML tag %s; write the value as plain text" % tag)

    def number(self, node, path):
        """An int or float node's value; a yaml-number diagnostic for every form that is not plain decimal.

        The value kept is the one YAML 1.1 gives (so the schema does not also complain about it), or the
        text when it is too long to read."""
        text = node.value
        if len(text) > MAX_NUMBER_CHARACTERS:
            self.number_problem(node, path, "%s is a number of %d characters; no number of a spec has more than 5 "
                                            "digits (ports end at 65535)" % (_grammar.quote(text), len(text)))
            return text
        if node.tag == _INT and _DECIMAL.match(text):
            return int(text)
        try:
            value = self.loader.yaml_constructors[node.tag](self.loader, node)
        except (ValueError, TypeError, AttributeError):
            self.number_problem(node, path, "%s is tagged as a number but is not one; remove the tag, or write a "
                                            "number" % _grammar.quote(text))
            return text
        if node.tag == _FLOAT:
            if math.isnan(value) or math.isinf(value):
                return text
            if not value.is_integer():
                return value  # the schema says a whole number is expected
            value = int(value)
            self.number_problem(node, path, "%s is a fractional number to YAML, not a whole one; write %d%s" % (
                _grammar.quote(text), value, _or_quote(text)))
            return value
        self.number_problem(node, path, _int_form_message(text, value))
        return value

    def number_problem(self, node, path, message):
        mark = node.start_mark
        self.doc.diagnostics.append(Diagnostic("yaml-number", message, path=pointer(path), file=self.doc.file,
                                               line=mark.line + 1, column=mark.column + 1))

    def key(self, key_node, path):
        """A mapping key as text; keys are never numbers or other types to the spec."""
        if not isinstance(key_node, yaml.ScalarNode):
            self.abort(key_node, path, "a mapping key must be plain text, not a %s" % (
                "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"), code="schema")
        return key_node.value

    def duplicate(self, key, key_path, key_node, first_node):
        if id(key_node) in self.reported:
            return  # an anchored mapping used in several places: its duplicate is reported once
        self.reported.add(id(key_node))
        first = first_node.start_mark
        self.doc.diagnostics.append(Diagnostic(
            "duplicate-key",
            "key %s is repeated (first at line %d, column %d); YAML keeps only one - remove or rename one of "
            "them" % (_grammar.quote(key), first.line + 1, first.column + 1),
            path=pointer(key_path), file=self.doc.file, line=key_node.start_mark.line + 1,
            column=key_node.start_mark.column + 1))

    def mapping(self, node, path, depth):
        result = {}
        merges = []
        own = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
            else:
                own.append((key_node, value_node))
        # YAML merge keys: the mapping's own keys win, then each source in the order given (a source's
        # own keys before those it merges itself). Duplicates are looked for within each mapping.
        for pairs in [own] + self.merge_sources(merges, path, depth):
            first_nodes = {}
            for key_node, value_node in pairs:
                key = self.key(key_node, path)
                key_path = path + (key,)
                if key in first_nodes:
                    self.duplicate(key, key_path, key_node, first_nodes[key])
                    continue
                first_nodes[key] = key_node
                if key in result:
                    continue
                self.keys[key_path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.walk(value_node, key_path, depth + 1)
        return result

    def merge_sources(self, merges, path, depth, within=()):
        """The own (key, value) pairs of every mapping merged in, in precedence order: each source,
        then the sources it merges itself. `within`: the ids of the sources being merged, to refuse a
        mapping that merges itself; every source counts against the alias budget."""
        out = []
        for value_node in merges:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.abort(source, path, "a merge key (<<) takes a mapping or a list of mappings")
                if id(source) in within or depth > self.max_depth:
                    self.abort(source, path, "a mapping merges itself (<<: with an alias to itself or to a mapping "
                                             "that merges it); merge other mappings only")
                self.budget -= 1 + len(source.value)
                if self.budget < 0:
                    self.abort(source, path, "merge keys expand to more than %d entries (--max-aliases); a fleet "
                                             "spec does not need this many" % self.max_aliases)
                out.append([(k, v) for k, v in source.value if k.tag != _MERGE])
                out.extend(self.merge_sources([v for k, v in source.value if k.tag == _MERGE], path, depth + 1,
                                              within + (id(source),)))
        return out


_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")


def _or_quote(text):
    return "; if text is meant, quote it: \"%s\"" % text


def _int_form_message(text, value):
    """What a YAML 1.1 integer form means, and what to write instead."""
    quoted = _grammar.quote(text)
    bare = text.lstrip("+-")
    if ":" in text:
        return ("%s is a base-60 number to YAML 1.1 (%d), not a port range; write a range quoted: \"%s\", "
                "or the number as %d" % (quoted, value, text, value))
    if bare[:2] in ("0x", "0X"):
        return "%s is hexadecimal to YAML 1.1 (%d); write %d%s" % (quoted, value, value, _or_quote(text))
    if bare[:2] in ("0b", "0B"):
        return "%s is binary to YAML 1.1 (%d); write %d%s" % (quoted, value, value, _or_quote(text))
    if "_" in text:
        return "%s is read as %d (YAML 1.1 drops '_'); write %d%s" % (quoted, value, value, _or_quote(text))
    decimal = bare.lstrip("0") or "0"
    meant = ", or %s if decimal was meant" % decimal if int(decimal) != abs(value) else ""
    return "%s is octal to YAML 1.1 (%d); write %d%s%s" % (quoted, value, value, meant, _or_quote(text))


def _read_subset(doc, text, limits):
    """(data, None) of text in the plain subset, its positions left to be read when asked for;
    (None, the line where the reader stopped) otherwise."""
    try:
        data = _blockyaml.read(text, None, None, limits.max_depth)
    except _blockyaml.Unsupported as exc:
        return None, exc.line
    doc.unread_positions = text
    return data, None


def load_text(text, file="<spec>", limits=None, loader=None):
    """Load spec text (str or bytes) into a Document. `loader`: "auto" or "yaml" (default: LOADER)."""
    limits = limits or DEFAULT_LIMITS
    doc = Document(file)
    try:
        if isinstance(text, bytes):
            text = _decode(text, file)
        doc.text = text
        invisible = _scan_invisible(text, file)
        if invisible:
            # Positions after such a character differ between YAML and an editor: nothing else is read.
            doc.diagnostics.extend(invisible)
            return doc
        values = text.count(",") + text.count("\n") + text.count(":")
        if values > limits.max_values:
            doc.diagnostics.append(Diagnostic(
                "yaml-syntax", "the file holds about %d values (commas, colons and lines), more than the %d of "
                               "--max-values (a spec of 50,000 hosts holds about 1,000,000); is this the right file? "
                               "If it is, raise --max-values" % (values, limits.max_values),
                file=file, line=1, column=1))
            return doc
        if not text.strip():
            doc.diagnostics.append(Diagnostic(
                "schema", "the file is empty; a fleet spec is a mapping with version: 1, consumers and hosts",
                path="", file=file, line=1, column=1))
            return doc
        if (loader or LOADER) != "yaml" and text.strip():
            data, stopped = _read_subset(doc, text, limits)
            if stopped is None:
                doc.data = data
                return doc
            if values > limits.max_yaml_values:
                doc.diagnostics.append(Diagnostic(
                    "yaml-syntax", "line %d is outside the plain YAML a spec is written in (an anchor, a tag, a "
                                   "multi-line or escaped scalar, a duplicate key, a YAML 1.1 number, or a syntax "
                                   "error), and the file holds about %d values: full YAML is read up to the %d "
                                   "values of --max-yaml-values (each costs about a kilobyte); write that line as "
                                   "plain YAML, or raise --max-yaml-values" % (stopped, values, limits.max_yaml_values),
                    file=file, line=stopped, column=1))
                return doc
        _import_yaml()
        loader = _YamlLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        if node is None:
            doc.diagnostics.append(Diagnostic(
                "schema", "the document is empty; a fleet spec is a mapping with version: 1, consumers and hosts",
                path="", file=file, line=1, column=1))
            return doc
        doc.data = _Walker(doc, loader, limits).walk(node, (), 0)
    except _Abort as abort:
        doc.diagnostics.append(abort.diagnostic)
        doc.data = None
    except _MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = "%s %s" % (exc.context, exc.problem)
        if "\t" in problem or "'\\t'" in problem:
            problem += " (YAML does not allow tabs for indentation; indent with spaces)"
        doc.diagnostics.append(Diagnostic(
            "yaml-syntax", problem, path="", file=file,
            line=(mark.line + 1) if mark else 1, column=(mark.column + 1) if mark else 1))
        doc.data = None
    except _YAMLError as exc:
        doc.diagnostics.append(Diagnostic("yaml-syntax", str(exc).replace("\n", " ")[:200],
                                          file=file, line=1, column=1))
        doc.data = None
    except RecursionError:
        doc.diagnostics.append(Diagnostic(
            "yaml-syntax", "the document nests too deeply to read; a fleet spec needs fewer than 10 levels",
            file=file, line=1, column=1))
        doc.data = None
    return doc


def load_file(path, limits=None, loader=None):
    """Load a spec file; SpecFileError if it cannot be read."""
    raw = read_spec_bytes(path, limits)
    return load_text(raw, file=path, limits=limits, loader=loader)
