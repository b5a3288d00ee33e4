# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of a fleet spec end to end: load, schema, cross-field rules. Private to the divert.fleet collection.

Everything that validates a spec - the command line, the `divert.fleet.validate`
and `divert.fleet.render` action plugins - calls `validate_file` or
`validate_data` and gets a `Report`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gc
import json

from ansible_collections.divert.fleet.plugins.module_utils import _checks, _grammar, _loader, _model, _schema
from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import ERROR, WARNING, sort_unique


class Report:
    """The outcome of validating one spec."""

    def __init__(self, file, diagnostics, fleet):
        self.file = file
        self.diagnostics = sort_unique(diagnostics)
        self.fleet = fleet

    @property
    def errors(self):
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def warnings(self):
        return [d for d in self.diagnostics if d.severity == WARNING]

    def valid(self, strict=False):
        return not self.errors and not (strict and self.warnings)

    def summary(self):
        hosts = self.fleet.hosts.values() if self.fleet else ()
        return {
            "hosts": len(hosts),
            "consumers": len(self.fleet.consumers) if self.fleet else 0,
            "rules": sum(len(h.rules) for h in hosts),
        }

    def as_dict(self, strict=False):
        return {
            "valid": self.valid(strict),
            "errors": [d.as_dict() for d in self.errors],
            "warnings": [d.as_dict() for d in self.warnings],
            "summary": self.summary(),
        }


# Codes that explain a value better than the schema's complaint about it: a schema diagnostic at the
# same path as one of these is left out (one problem, one diagnostic).
EXPLAINS_SCHEMA = ("yaml-number", "unsafe-rc-value")


def _without_shadowed(diagnostics):
    explained = {d.path for d in diagnostics if d.code in EXPLAINS_SCHEMA}
    if not explained:
        return diagnostics
    return [d for d in diagnostics if not (d.code == "schema" and d.path in explained)]


def validate_document(doc):
    diagnostics = list(doc.diagnostics)
    if doc.data is None:
        if not diagnostics:  # `~`, `null`, or `data: null`: nothing to validate is not a valid spec
            diagnostics.append(doc.diagnostic(
                "schema", (), "the document is null; a fleet spec is a mapping with version: 1, consumers and hosts"))
        return Report(doc.file, diagnostics, None)
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else "a single value"
        diagnostics.append(doc.diagnostic(
            "schema", (), "the document is %s; a fleet spec is a mapping with version: 1, consumers and hosts" % kind))
        return Report(doc.file, diagnostics, None)
    diagnostics.extend(_schema.validate(doc))
    fleet = _model.resolve(doc.data)
    for check in _checks.ERROR_CHECKS + _checks.WARNING_CHECKS:
        diagnostics.extend(check(doc, fleet))
    return Report(doc.file, _without_shadowed(diagnostics), fleet)


def _without_gc(function):
    """Run `function` with the cyclic garbage collector paused. A spec's nodes, values and positions are
    hundreds of thousands of objects without cycles; each allocation burst would otherwise make the
    collector walk every object of the process (all of Ansible's, in an action plugin's worker)."""
    def run(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    run.__doc__ = function.__doc__
    run.__name__ = function.__name__
    return run


@_without_gc
def validate_file(path, limits=None):
    """Report for a spec file; raises _loader.SpecFileError when it cannot be read. `limits`: _loader.Limits."""
    return validate_document(_loader.load_file(path, limits=limits))


@_without_gc
def validate_text(text, file="<spec>", limits=None):
    return validate_document(_loader.load_text(text, file=file, limits=limits))


def _escape(match):
    return "\\u%04x" % ord(match.group())


@_without_gc
def validate_data(data, file="<data>"):
    """Report for spec data that is already parsed (no line/column information).

    The data goes through the same loader as a file, as JSON text: what a file may not hold
    (fractional or over-long numbers, keys that are not text) it may not hold either, and the
    diagnostics have JSON Pointers but no positions."""
    try:
        # Characters YAML would read as line breaks, or that the loader refuses in a file, can only
        # be inside JSON strings here: escaped, they reach the values as they are.
        text = _grammar.ANY_INVISIBLE_RE.sub(_escape, json.dumps(data, default=str, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError) as exc:  # a circular structure, a number past 4300 digits
        doc = _loader.Document(file)
        doc.positions_known = False
        doc.diagnostics.append(doc.diagnostic("schema", (), "the data cannot be read as a fleet spec (%s); pass "
                                                            "the spec as a file" % str(exc)[:200]))
        return validate_document(doc)
    doc = _loader.load_text(text, file=file)
    doc.positions_known = False
    for diag in doc.diagnostics:
        diag.line = diag.column = None
    return validate_document(doc)
