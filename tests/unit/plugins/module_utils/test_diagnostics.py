# -*- coding: utf-8 -*-
"""Diagnostics are bounded per code: the first ones listed, the rest counted in one 'and N more'."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.module_utils._diagnostics import (
    MAX_PER_CODE, Diagnostic, omitted, sort_unique)


def _diag(code, line, message="m"):
    return Diagnostic(code, "%s %d" % (message, line), path="/x/%d" % line, file="f", line=line, column=1)


def test_at_most_max_per_code_then_a_count_of_the_rest():
    many = [_diag("schema", line) for line in range(1, 200)] + [_diag("unknown-consumer", 7)]
    out = sort_unique(many)
    schema = [d for d in out if d.code == "schema"]
    assert len(schema) == MAX_PER_CODE + 1
    assert [d.line for d in schema[:MAX_PER_CODE]] == list(range(1, MAX_PER_CODE + 1))
    assert schema[-1].line == MAX_PER_CODE + 1
    assert schema[-1].message.startswith("and %d more schema diagnostics like the %d above" % (
        199 - MAX_PER_CODE, MAX_PER_CODE))
    assert [d.code for d in out].count("unknown-consumer") == 1


def test_counts_made_earlier_are_added_and_at_least_is_kept():
    listed = [_diag("invisible-character", line) for line in range(1, MAX_PER_CODE + 1)]
    earlier = omitted(_diag("invisible-character", 1000), 12345)
    stopped = omitted(_diag("invisible-character", 2000), 1, at_least=True)
    out = sort_unique(listed + [earlier, stopped, _diag("invisible-character", 1500)])
    assert len(out) == MAX_PER_CODE + 1
    assert out[-1].message.startswith("and at least 12347 more invisible-character diagnostics")
    assert out[-1].line == 1000


def test_identical_diagnostics_are_listed_once():
    assert len(sort_unique([_diag("schema", 3), _diag("schema", 3)])) == 1
