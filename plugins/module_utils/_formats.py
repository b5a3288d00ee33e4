# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation reports as text, JSON, SARIF 2.1.0 and JUnit XML. Private to the divert.fleet collection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import CODES, ERROR

TOOL_NAME = "divert-fleet"
TOOL_VERSION = "0.1.0"
TOOL_URI = "https://galaxy.ansible.com/ui/repo/published/divert/fleet/"
RULE_HELP = "See the validation codes in the divert.fleet README."


def _where(diag):
    if diag.line is None:
        return "%s:%s" % (diag.file, diag.path or "/")
    return "%s:%d:%d" % (diag.file, diag.line, diag.column)


def text(report, strict=False):
    """`file:line:col: severity code: message`, the form compilers use, then a summary line."""
    lines = ["%s: %s %s: %s" % (_where(d), d.severity, d.code, d.message) for d in report.diagnostics]
    summary = report.summary()
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = "valid" if report.valid(strict) else "invalid"
    lines.append("%s: %s: %d error%s, %d warning%s (%d hosts, %d consumers, %d rules)%s" % (
        report.file, verdict, errors, "" if errors == 1 else "s", warnings, "" if warnings == 1 else "s",
        summary["hosts"], summary["consumers"], summary["rules"],
        "; --strict counts warnings as errors" if strict and warnings else ""))
    return "\n".join(lines) + "\n"


def as_json(report, strict=False):
    return json.dumps(report.as_dict(strict), indent=2, sort_keys=True) + "\n"


def sarif(report, strict=False):
    codes = sorted(CODES)
    rules = [{
        "id": code,
        "name": "".join(part.capitalize() for part in code.split("-")),
        "shortDescription": {"text": CODES[code][1]},
        "fullDescription": {"text": CODES[code][1]},
        "help": {"text": RULE_HELP},
        "defaultConfiguration": {"level": "error" if CODES[code][0] == ERROR else "warning"},
    } for code in codes]
    results = []
    for diag in report.diagnostics:
        level = "error" if diag.severity == ERROR or strict else "warning"
        location = {"physicalLocation": {"artifactLocation": {"uri": diag.file}}}
        if diag.line is not None:
            location["physicalLocation"]["region"] = {"startLine": diag.line, "startColumn": diag.column}
        if diag.path:
            location["logicalLocations"] = [{"fullyQualifiedName": diag.path, "kind": "member"}]
        results.append({
            "ruleId": diag.code, "ruleIndex": codes.index(diag.code), "level": level,
            "message": {"text": diag.message}, "locations": [location],
        })
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": TOOL_VERSION, "informationUri": TOOL_URI,
                                "rules": rules}},
            "results": results,
        }],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def junit(report, strict=False):
    """One test case per validation code: it fails when the spec has a finding of that code."""
    from xml.sax.saxutils import escape, quoteattr  # imported here: it brings urllib and http with it
    cases = []
    failures = 0
    for code in sorted(CODES):
        found = [d for d in report.diagnostics if d.code == code]
        severity = CODES[code][0]
        body = "\n".join("%s: %s" % (_where(d), d.message) for d in found)
        if found and (severity == ERROR or strict):
            failures += 1
            inner = "<failure message=%s type=%s>%s</failure>" % (
                quoteattr("%d finding%s of %s" % (len(found), "" if len(found) == 1 else "s", code)),
                quoteattr(code), escape(body))
        elif found:
            inner = "<system-out>%s</system-out>" % escape(body)
        else:
            inner = ""
        cases.append('    <testcase classname=%s name=%s>%s</testcase>' % (
            quoteattr("divert-fleet.%s" % report.file), quoteattr(code), inner))
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n  <testsuite name=%s tests="%d" failures="%d" ' \
           'errors="0" skipped="0">' % (quoteattr("divert-fleet validate %s" % report.file), len(cases), failures)
    return "\n".join([head] + cases + ["  </testsuite>", "</testsuites>"]) + "\n"


FORMATS = {"text": text, "json": as_json, "sarif": sarif, "junit": junit}
