# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading a fleet spec with the position of every node. Private to the divert.fleet collection.

The YAML is composed (with libyaml's CSafeLoader when present, the pure-Python
SafeLoader otherwise) and the node graph is turned into plain data by our own
walk, which:
- records the line and column of every value and every mapping key, keyed by
  the path of keys and indexes that JSON Pointers are made from;
- refuses duplicate keys (PyYAML silently keeps the last one);
- bounds nesting depth and alias expansion, so a "billion laughs" document
  costs a diagnostic, not the machine's memory.
Problems become diagnostics; only an unreadable or oversized file raises
`SpecFileError` (the command line exits 2 for it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math

try:
    import yaml
    HAS_YAML = True
    try:
        from yaml import CSafeLoader as _YamlLoader
    except ImportError:  # libyaml not compiled in
        from yaml import SafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - PyYAML is a requirement
    HAS_YAML = False
    yaml = None
    _YamlLoader = None

from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import Diagnostic, pointer

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIAS_EXPANSION = 100000

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

    def position(self, path, key=False):
        if not self.positions_known:
            return (None, None)
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


def read_spec_bytes(path):
    """The file's bytes, or SpecFileError with a message that names it."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except (IOError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecFileError("%s: cannot read the fleet spec: %s" % (path, reason))
    if len(raw) > MAX_BYTES:
        raise SpecFileError(
            "%s: the file is larger than %d MiB; a fleet spec of even thousands of hosts is far smaller "
            "- is this the right file?" % (path, MAX_BYTES // (1024 * 1024)))
    return raw


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


class _Walker:
    def __init__(self, doc, loader):
        self.doc = doc
        self.loader = loader
        self.values = doc.values
        self.keys = doc.keys
        self.built = set()
        self.budget = MAX_ALIAS_EXPANSION

    def abort(self, node, path, message, code="yaml-syntax"):
        mark = node.start_mark
        raise _Abort(Diagnostic(code, message, path=pointer(path), file=self.doc.file,
                                line=mark.line + 1, column=mark.column + 1))

    def walk(self, node, path, depth):
        if depth > MAX_DEPTH:
            self.abort(node, path, "the document nests deeper than %d levels (a fleet spec needs fewer than 10); "
                                   "is an alias referring to itself?" % MAX_DEPTH)
        node_id = id(node)
        if node_id in self.built:
            self.budget -= 1
            if self.budget < 0:
                self.abort(node, path, "aliases expand to more than %d extra nodes; a fleet spec does not need "
                                       "this many (a \"billion laughs\" document?)" % MAX_ALIAS_EXPANSION)
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
        if tag in (_INT, _BOOL, _NULL, _FLOAT):
            value = self.loader.yaml_constructors[tag](self.loader, node)
            if tag == _FLOAT and (math.isnan(value) or math.isinf(value)):
                return node.value
            return value
        if tag in _AS_TEXT:
            return node.value
        self.abort(node, path, "unsupported YAML tag %s; write the value as plain text" % tag)

    def mapping(self, node, path, depth):
        result = {}
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.append((key_node, value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.abort(key_node, path, "a mapping key must be plain text, not a %s" % (
                    "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"), code="schema")
            key = key_node.value
            key_path = path + (key,)
            key_mark = key_node.start_mark
            if key in result:
                first_line, first_column = self.keys[key_path]
                self.doc.diagnostics.append(Diagnostic(
                    "duplicate-key",
                    "key %s is repeated (first at line %d, column %d); YAML keeps only one - remove or rename one "
                    "of them" % (json.dumps(key), first_line, first_column),
                    path=pointer(key_path), file=self.doc.file, line=key_mark.line + 1, column=key_mark.column + 1))
                continue
            self.keys[key_path] = (key_mark.line + 1, key_mark.column + 1)
            result[key] = self.walk(value_node, key_path, depth + 1)
        for key_node, value_node in merged:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.abort(source, path, "a merge key (<<) takes a mapping or a list of mappings")
                for sub_key, sub_value in source.value:
                    key = sub_key.value
                    if key in result or not isinstance(sub_key, yaml.ScalarNode):
                        continue
                    key_path = path + (key,)
                    self.keys[key_path] = (sub_key.start_mark.line + 1, sub_key.start_mark.column + 1)
                    result[key] = self.walk(sub_value, key_path, depth + 1)
        return result


def load_text(text, file="<spec>"):
    """Load spec text (str or bytes) into a Document."""
    doc = Document(file)
    try:
        if isinstance(text, bytes):
            text = _decode(text, file)
        doc.text = text
        if not text.strip():
            doc.diagnostics.append(Diagnostic(
                "schema", "the file is empty; a fleet spec is a mapping with version: 1, consumers and hosts",
                path="", file=file, line=1, column=1))
            return doc
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
        doc.data = _Walker(doc, loader).walk(node, (), 0)
    except _Abort as abort:
        doc.diagnostics.append(abort.diagnostic)
        doc.data = None
    except yaml.MarkedYAMLError as exc:
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
    except yaml.YAMLError as exc:
        doc.diagnostics.append(Diagnostic("yaml-syntax", str(exc).replace("\n", " "), file=file, line=1, column=1))
        doc.data = None
    except RecursionError:
        doc.diagnostics.append(Diagnostic(
            "yaml-syntax", "the document nests too deeply to read; a fleet spec needs fewer than 10 levels",
            file=file, line=1, column=1))
        doc.data = None
    return doc


def load_file(path):
    """Load a spec file; SpecFileError if it cannot be read."""
    raw = read_spec_bytes(path)
    return load_text(raw, file=path)
