# -*- coding: utf-8 -*-
"""The plain-subset reader against the YAML path: the same values, positions and diagnostics on every spec
of the tests' corpus and on mutations of it, and the reader really reads the specs people write."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import importlib.util
import os
import random

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _blockyaml, _loader
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_document
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import EXAMPLES, base, dump
from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.hostile_corpus import CASES, text_of

ROOT = os.path.dirname(EXAMPLES)


BENCH = os.path.join(ROOT, "benchmarks", "bench.py")  # not in the tree ansible-test units copies; pytest has it


def _bench_fleet(hosts):
    if not os.path.exists(BENCH):
        pytest.skip("benchmarks/bench.py is not in this tree")
    spec = importlib.util.spec_from_file_location("divert_fleet_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.fleet_text(hosts)


def _corpus():
    out = []
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.yml"))):
        with open(path, encoding="utf-8") as handle:
            out.append((os.path.basename(path), handle.read()))
    out.append(("helpers-base", dump(base())))
    out += [(case["name"], text_of(case)) for case in CASES if "lines" in case]
    if os.path.exists(BENCH):
        out.append(("bench-60", _bench_fleet(60)))
        out.append(("bench-6", _bench_fleet(6)))
    return out


CORPUS = _corpus()


def _mutations(text, every=1):
    """Line-level edits of a spec (of every `every`th line): most leave the subset or make the spec wrong."""
    lines = text.split("\n")
    out = []
    for index, line in enumerate(lines):
        if not line.strip() or index % every:
            continue
        edits = [
            lines[:index] + lines[index + 1:],  # removed
            lines[:index + 1] + [line] + lines[index + 1:],  # repeated (a duplicate key, or an item more)
            lines[:index] + [" " + line] + lines[index + 1:],  # indented one more
            lines[:index] + [line[2:] if line.startswith("  ") else line] + lines[index + 1:],  # one less
            lines[:index] + [line + "  # note"] + lines[index + 1:],
            lines[:index] + [line.replace(": ", ":", 1)] + lines[index + 1:],
            lines[:index] + [line.replace(": ", ": '", 1) + "'"] + lines[index + 1:],
            lines[:index] + [line.replace(", ", ",", 1).replace("[", "[ ", 1)] + lines[index + 1:],
            lines[:index] + [line.replace("- ", "-   ", 1)] + lines[index + 1:],
            lines[:index] + [line.rstrip("]}")] + lines[index + 1:],
            lines[:index] + [line, "", "# comment", "   "] + lines[index + 1:],
        ]
        out.extend("\n".join(edit) for edit in edits)
    for old, new in ((": 9000", ": 0x2328"), (": 9000", ": 9000.0"), (": 9000", ": 9_000"), ("pf", "PF"),
                     (": 3", ": ~"), (": 3", ": yes"), (": 3", ": 003"), (": 3", ":"), ("tcp", "'tcp'"),
                     ("tcp", '"tcp"'), ("version: 1", "version: 1\nversion: 1"), ("ids", "&a ids"),
                     ("\n", "\r\n"), ("  ", "\t")):
        if old in text:
            out.append(text.replace(old, new, 1))
    return out


def _both(text, limits=None):
    """The loaded document and its report on each path."""
    fast = _loader.load_text(text, file="f.yml", loader="auto", limits=limits)
    slow = _loader.load_text(text, file="f.yml", loader="yaml", limits=limits)
    return fast, slow


def _assert_same(fast, slow):
    assert fast.data == slow.data
    assert repr(fast.data) == repr(slow.data)  # the same types too (1 is not True, "1" is not 1)
    assert [d.as_dict() for d in fast.diagnostics] == [d.as_dict() for d in slow.diagnostics]
    assert fast.positions() == slow.positions()
    fast_report, slow_report = validate_document(fast), validate_document(slow)
    assert [d.as_dict() for d in fast_report.diagnostics] == [d.as_dict() for d in slow_report.diagnostics]


@pytest.mark.parametrize("name,text", CORPUS, ids=[name for name, _text in CORPUS])
def test_the_corpus_loads_the_same_on_both_paths(name, text):
    _assert_same(*_both(text))


@pytest.mark.parametrize("name,text", [c for c in CORPUS if c[0] in ("fleet.yml", "helpers-base", "bench-6")],
                         ids=lambda item: item if isinstance(item, str) and len(item) < 40 else "")
def test_mutated_specs_load_the_same_on_both_paths(name, text):
    for mutated in _mutations(text, every=7 if name.startswith("bench") else 1):
        fast, slow = _both(mutated)
        try:
            _assert_same(fast, slow)
        except AssertionError:
            raise AssertionError("differs on:\n%s" % mutated)


def test_the_reader_reads_the_specs_people_write():
    """Not a vacuous comparison: the examples, the generated fleet and the helpers' spec are read by the subset
    reader itself, with a position for every value and key the YAML path has."""
    for name, text in CORPUS:
        if name.endswith(".yml") and name != "broken.yml" or name in ("helpers-base", "bench-60"):
            values, keys = {}, {}
            data = _blockyaml.read(text, values, keys)
            slow = _loader.load_text(text, file="f.yml", loader="yaml")
            assert (data, values, keys) == (slow.data, slow.values, slow.keys), name
            fast = _loader.load_text(text, file="f.yml", loader="auto")
            assert fast.unread_positions == text and not fast.values  # read when first asked for
            assert fast.position(("hosts",)) == slow.position(("hosts",))


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: b\n  c\n", "a: \"x\\ty\"\n", "a: 0x10\n",
    "a: 1\na: 2\n", "--- \na: 1\n", "- a\n", "a: [1,\n  2]\n", "a: 1.5\n", "a: 2001-12-14\n", "<<: {a: 1}\n",
    "a:\tb\n", "? a\n: b\n", "a: [b, ]\n", "a: {b}\n", "a: b: c\n", "a: 'x\n  y'\n",
    # `>` starts a folded scalar (`>` alone is ""), and no plain scalar, in a flow collection either
    "a: >\n", "a: >-\n", "a: >x\n", "- >\n", "a: [>x]\n", "a: {b: >x}\n",
    # a duplicate key in a flow mapping: YAML keeps the first and the loader reports it
    "a: {b: 1, b: 2}\n", "a: {b: 1, 'b': 2}\n", "a: [{b: [], b: {}}]\n",
    # a key of more than 1024 characters is not a key to YAML, quoted or in a flow mapping
    "'%s': 1\n" % ("k" * 1025), "a:\n- \"%s\": 1\n" % ("k" * 1025), "a: {%s: 1}\n" % ("k" * 1025),
    "a: {'%s': 1}\n" % ("k" * 1025),
])
def test_what_is_outside_the_subset_goes_to_the_yaml_path(text):
    with pytest.raises(_blockyaml.Unsupported):
        _blockyaml.read(text, {}, {})
    _assert_same(*_both(text))


@pytest.mark.parametrize("max_depth", [0, 1, 2, 3])
@pytest.mark.parametrize("text", ["a: 1\n", "a: [b]\n", "a: {b: c}\n", "a:\n  b: c\n", "a:\n- b\n", "a:\n- b: c\n",
                                  "a: []\n", "a: [[]]\n"])
def test_a_small_max_depth_counts_scalars_too(text, max_depth):
    """--max-depth bounds every node, a scalar as much as a collection: the value of `a: 1` is at depth 1."""
    _assert_same(*_both(text, _loader.Limits(max_depth=max_depth)))


def test_a_refusal_keeps_nothing_of_the_text_refused():
    """The reader refuses with one exception instance: raising it again must not chain its tracebacks (and with
    them every reader and text) together."""
    for _round in range(3):
        with pytest.raises(_blockyaml.Unsupported):
            _blockyaml.read("a: [b\n", None, None)
    assert _blockyaml._UNSUPPORTED.__traceback__ is None


def test_plain_scalars_resolve_as_yaml_1_1_does():
    text = "a: yes\nb: Off\nc: ~\nd: null\ne: -12\nf: +3\ng: 0\nh: 8000:8100\ni: 1e3x\nj: '010'\nk: [no, 7]\n"
    values = {}
    data = _blockyaml.read(text, values, {})
    assert data == {"a": True, "b": False, "c": None, "d": None, "e": -12, "f": 3, "g": 0, "h": "8000:8100",
                    "i": "1e3x", "j": "010", "k": [False, 7]}
    _assert_same(*_both(text))


def test_a_large_spec_outside_the_subset_names_the_option():
    text = _bench_fleet(20) + "x-a: &a 1\n" + "".join("# %d\n" % i for i in range(10))
    limits = _loader.Limits(max_yaml_values=50)
    doc = _loader.load_text(text, file="f.yml", limits=limits, loader="auto")
    [diag] = doc.diagnostics
    assert diag.code == "yaml-syntax" and "--max-yaml-values" in diag.message and doc.data is None
    assert diag.line == text.split("\n").index("x-a: &a 1") + 1
    assert _loader.load_text(text, file="f.yml", loader="auto").diagnostics == []


def test_the_resolver_table_is_pyyamls():
    """The subset reader resolves plain scalars with a copy of PyYAML's table, so as not to import PyYAML."""
    import yaml
    from yaml.constructor import SafeConstructor

    def table(resolvers):
        return {char: [(tag, regexp.pattern, regexp.flags) for tag, regexp in items]
                for char, items in resolvers.items()}

    assert table(_blockyaml._IMPLICIT) == table(yaml.resolver.Resolver.yaml_implicit_resolvers)
    assert _blockyaml._BOOLS == SafeConstructor.bool_values


def test_a_spec_in_the_subset_is_read_without_pyyaml():
    import subprocess
    import sys
    from ansible_collections.divert.fleet.tests.unit.plugins.module_utils.fleet_helpers import subprocess_env
    code = ("import sys\nfrom ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file\n"
            "assert validate_file(sys.argv[1]).valid()\nassert 'yaml' not in sys.modules, 'PyYAML imported'\n")
    subprocess.run([sys.executable, "-c", code, os.path.join(EXAMPLES, "fleet.yml")], env=subprocess_env(),
                   check=True)


def test_positions_are_read_within_the_bound_the_values_were_read_in():
    """Positions are read on demand, without the limits: a document the reader took under a high --max-depth
    must be read again as deep."""
    text = "a: %sx%s\n" % ("[" * (_blockyaml.MAX_DEPTH - 1), "]" * (_blockyaml.MAX_DEPTH - 1))
    fast, slow = _both(text, _loader.Limits(max_depth=100))
    assert fast.unread_positions == text
    _assert_same(fast, slow)


# --- a differential fuzz: generated documents near and across the edges of the subset ---------------------

# Values of the subset, and (below) values in it or just outside it.
_FUZZ_PLAIN = (
    "a", "tcp", "em0", "1", "0", "-1", "+1", "9000", "yes", "No", "on", "~", "null", "x y", "'q'", '"q"',
    "'it''s'", "xé", "[a, b]", "[]", "{}", "{a: 1}", "[a, {b: [1, c]}]", "8000:8100", "a:b", "10.0.0.0/8",
    "fe80::1", "x😀", "a|b", "(x)", "<x", "b #c", "'a #b'", '"a: b"', "'😀'", "[yes, ~, '010']", "x,y", "...",
)
_FUZZ_SCALARS = (
    "a", "tcp", "em0", "1", "0", "01", "010", "0o17", "1_000", "1e3", ".5", "+1", "-0", "-1", "0x1F", "1:30",
    "10:20", "8000:8100", "9000", "yes", "No", "on", "~", "null", "NULL", "y", "2026-01-01", "<<", "=", "a:b",
    "a#b", "a #b", ">", ">x", "|", "-", "-x", "?x", ":x", "x:", "é", "xé", "x y", "'q'", '"q"', "'it''s'",
    '"a: b"', "'a #b'", "''", '""', '"x\\ty"', "!x", "&a", "*a", "%x", "@x", "x,y", "x]", "...", "---", ".inf",
    "1.0", "1" * 40, "10.0.0.0/8", "fe80::1", "a|b", "a'b", "(x)", "<x", "x😀", "'😀'", "[a, b]", "[]", "{}",
    "{a: 1}", "{a: 1, a: 2}", "[a, [b]]", "[a,b]", "[a, ]", "[a", "{a}", "{a:1}", "[a: b]", "[a:b]", "[-a]",
    "[>a]", "[<a]", "[a:?]", "['a', \"b\"]", "[yes, ~, 012]", "[=]", "[a #b]", "[a] #c", "[a]#c", "'a'#c",
    "b #c", "{a: b:c}", "[a - b]", "{'%s': 1}" % ("k" * 1025),
)
_FUZZ_KEYS = (
    "a", "b", "c", "1", "01", "yes", "true", "null", "'a'", '"a"', "<<", "=", "a b", "a.b", "a-b", "a@b", "-a",
    "a:b", "''", "'é'", "é", "? a", "!a", "k" * 1000, "'%s'" % ("k" * 1025), "A",
)
_FUZZ_CHARS = " :#-,[]{}'\"?|>!&*%@~.+_=\n\t\r\\é\u00a0😀ax1"


def _fuzz_node(rng, parent, depth, out, prefix):
    """Append the lines of a random block node to out: the value of `prefix` (a key and its colon, or a dash, at
    column `parent`), on the same line or below it."""
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        out.append(prefix + " " * rng.randint(1, 2) + rng.choice(_FUZZ_SCALARS if roll < 0.1 else _FUZZ_PLAIN)
                   + rng.choice(("", "", "", "", "", " # c", "  ", "#c" if roll < 0.2 else "")))
        return
    out.append(prefix + rng.choice(("", "", " # c", "  ")))
    if rng.random() < 0.1:
        out.append(rng.choice(("", "# x", "   ", "#")))
    indent = parent + rng.choice((2, 2, 4, 1))
    if roll < 0.7:
        for _index in range(rng.randint(1, 4)):
            key = rng.choice(_FUZZ_KEYS) if rng.random() < 0.1 else rng.choice("abcdefgh") + str(rng.randint(0, 9))
            _fuzz_node(rng, indent, depth - 1, out, " " * indent + key + ":")
        return
    if prefix.endswith(":") and rng.random() < 0.4:
        indent = parent  # a list at its key's indent
    for _index in range(rng.randint(1, 4)):
        _fuzz_node(rng, indent, depth - 1, out, " " * indent + "-")


def _fuzz_document(rng):
    """A random document of spec-like fragments, most in the subset, many just outside it."""
    out = []
    for _index in range(rng.randint(1, 4)):
        key = rng.choice(_FUZZ_KEYS if rng.random() < 0.1 else ("version", "hosts", "consumers", "profiles", "a", "b"))
        _fuzz_node(rng, 0, rng.randint(0, 3), out, key + ":")
    for _edit in range(rng.choice((0, 0, 1, 2))):
        index = rng.randrange(len(out))
        line = out[index]
        out[index:index + 1] = rng.choice((
            [line, line], [" " + line], [line[1:]], [line, rng.choice(("-", "- x", "? a", ": b", "---", "...",
                                                                       "  a: 1", "x", ""))],
            [line + rng.choice((" ", "#z", ":", ",", "]", "'"))], [line.replace(": ", ":", 1)]))
    text = "\n".join(out) + rng.choice(("\n", "\n", ""))
    if rng.random() < 0.1:
        chars = list(text)
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(_FUZZ_CHARS))
        text = "".join(chars)
    roll = rng.random()
    if roll < 0.02:
        return text.replace("\n", "\r\n")
    if roll < 0.04:
        return "---\n" + text
    if roll < 0.06:
        return "\ufeff" + text
    return text


def test_generated_documents_load_the_same_on_both_paths():
    """Seeded: the same documents on every run, so that a difference fails every run."""
    rng = random.Random(20260101)
    read = 0
    for _index in range(3000):
        text = _fuzz_document(rng)
        limits = _loader.Limits(max_depth=rng.randint(0, 3)) if rng.random() < 0.05 else None
        fast, slow = _both(text, limits)
        try:
            _assert_same(fast, slow)
        except AssertionError:
            raise AssertionError("differs on %r (limits %r)" % (text, limits and vars(limits)))
        values, keys = {}, {}
        try:
            data = _blockyaml.read(text, values, keys, (limits or _loader.DEFAULT_LIMITS).max_depth)
        except _blockyaml.Unsupported:
            continue
        read += 1
        assert (repr(data), values, keys, slow.diagnostics) == (repr(slow.data), slow.values, slow.keys, []), text
    assert read > 450  # the reader itself read a good part of them (609)
