# -*- coding: utf-8 -*-
"""The one definition of an allowed string: shapes, forbidden characters, reserved names, schema forms."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os
import re

import pytest

from ansible_collections.divert.fleet.plugins.module_utils import _grammar as g

# Strings no kind may accept: every forbidden character class, at the end (where `$` fails) and inside.
HOSTILE_CHARACTERS = (
    ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
    + ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"]
    + ["\u2066", "\u2067", "\u2068", "\u2069"]
)
STATEMENT_ENDERS = list(g.STATEMENT_ENDERS)
SHELL = list(g.SHELL_METACHARACTERS)

GOOD = {
    "name": ["web", "inspect-web", "a", "a" * 63, "r_1-x"],
    "host": ["fw-edge-01", "fw1.example.org", "H", "0host", "a" * 253],
    "interface": ["igb0", "vtnet1", "lagg0.100", "em_1", "a" * 15],
    "service": ["suricata", "appidd", "divert_probe", "a" * 63],
    "rc_var": ["suricata_flags", "_x", "A_B9", "a" * 128],
    "anchor": ["divert_fleet", "Fleet-1", "a" * 63],
    "rc_value": ["", "YES", "-v -k none", "@PORT@", "/usr/local/etc/suricata.yaml", "a" * 1024, "x=y,z*"],
    "text": ["", "Suricata IPS in divert mode", "caf\u00e9 (x) 'q' & <y>", "a" * 200],
    "port_range": ["80:90", "1:65535"],
    "address": ["any", "10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::"],
    "path": ["/usr/local/etc/suricata/suricata.yaml", "/usr/local/etc/suricata/rules/*.rules", "/a/.hidden",
             "/a/b..c", "/x/rule[12].rules", "/" + "a" * 1023],
}
BAD = {
    "name": ["", "Web", "1web", "-web", "web.1", "a" * 64, "we b", "web/x"],
    "host": ["", "-h", "h/1", "h 1", "a" * 254, "h:1"],
    "interface": ["", "Igb0", "0igb", "igb-0", "a" * 16, "igb0/1"],
    "service": ["", "../../../../tmp/x", "sur-icata", "sur.icata", "Suricata", "_x", "a" * 64, "x y"],
    "rc_var": ["", "1x", "x-y", "x.y", "a" * 129, "reboot\n"],
    "anchor": ["", "_hidden", "a/b", 'x"', "x y", "a" * 64, "-x"],
    "rc_value": ["-v & touch /tmp/x &", "$(id)", "`id`", "a|b", "a;b", "a<b", "a>b", "(a)", "a\\b", 'a"b',
                 "a'b", "#x", "{x}", "a" * 1025],
    "text": ["a;b", "#", '"', "{", "}", "\\", "$x", "`x`", "a" * 201],
    "port_range": ["80", "80-90", ":80", "123456:1"],
    "address": ["", "10.0.0.0/8 ", "host.example", "10.0.0.0/8;"],
    "path": ["", "relative/x", "/a/../b", "/a/..", "/../x", "/a b", "/a;b", "/$x", "/a//b", "/" + "a" * 1024],
}


@pytest.mark.parametrize("kind", g.KINDS)
def test_good_strings_have_no_problem(kind):
    for value in GOOD[kind]:
        assert g.shape_problem(kind, value) is None, (kind, value)
        assert g.matches(kind, value), (kind, value)


@pytest.mark.parametrize("kind", g.KINDS)
def test_bad_strings_have_a_problem_that_quotes_them(kind):
    for value in BAD[kind]:
        message = g.shape_problem(kind, value)
        assert message, (kind, value)
        assert not g.matches(kind, value)
        assert message.startswith(g.LABEL[kind])
        assert "expected" in message or "at most" in message


@pytest.mark.parametrize("kind", g.KINDS)
@pytest.mark.parametrize("char", HOSTILE_CHARACTERS)
def test_no_kind_takes_an_invisible_character_anywhere(kind, char):
    good = GOOD[kind][0] or "x"
    for value in (good + char, char + good, good[:1] + char + good[1:]):
        message = g.shape_problem(kind, value)
        assert message, (kind, value)


@pytest.mark.parametrize("char", STATEMENT_ENDERS)
def test_statement_enders_reach_no_rule(char):
    for kind in ("name", "host", "interface", "service", "rc_var", "anchor", "text", "rc_value", "address"):
        assert g.shape_problem(kind, "a" + char) is not None, (kind, char)


@pytest.mark.parametrize("char", SHELL)
def test_rc_values_refuse_shell_metacharacters(char):
    message = g.rc_value_problem("-v %s x" % char)
    assert message and "character 4" in message


def test_a_trailing_newline_is_not_a_match():
    """re.match with `$` accepts "web\\n"; the grammar never does."""
    assert re.match("^[a-z]+$", "web\n")
    for kind in g.KINDS:
        value = (GOOD[kind][0] or "x") + "\n"
        assert not g.matches(kind, value)
        assert not re.search(g.schema_pattern(kind), value), kind


def test_messages_quote_values_cut_to_a_bound():
    message = g.problem("name", "X" * 100000)
    assert len(message) < 400 and "(100000 characters)" in message
    assert g.quote(10 ** 5000) == "a number of about 5001 digits"
    assert g.quote("a\u2028b") == '"a\\u2028b"'  # the escape shows what an editor hides


def test_problem_names_the_character_and_what_is_right():
    assert g.problem("rc_value", "-v & x") == (
        "rc.conf value \"-v & x\" holds '&' at character 4; expected " + g.WHAT["rc_value"])
    assert "U+2028 LINE SEPARATOR at character 2" in g.problem("text", "a\u2028b")
    assert g.problem("anchor", "") == "pf anchor is empty; expected " + g.WHAT["anchor"]


def test_problem_of_a_non_string():
    assert "is not text" in g.problem("service", 5)
    assert "is not text" in g.problem("rc_value", None)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        g.problem("colour", "red")


@pytest.mark.parametrize("name", ["pf", "pflog", "pfsync", "ipfw", "kld", "sshd", "syslogd", "cron", "netif",
                                  "routing", "devd", "ntpd", "divert_fleet", "divert_fleet_gate", "configd"])
def test_reserved_services(name):
    assert g.is_reserved_service(name)
    assert "is reserved: " in g.problem("service", name)


@pytest.mark.parametrize("name", ["suricata", "natd", "appidd", "classifier", "pf_ids", "sshd2", "divert_probe"])
def test_services_a_consumer_may_run(name):
    assert not g.is_reserved_service(name)
    assert g.problem("service", name) is None


@pytest.mark.parametrize("name", ["kld_list", "pf_enable", "pf_rules", "pf_flags", "firewall_enable",
                                  "firewall_script", "divert_fleet_enable", "gateway_enable",
                                  "ipv6_gateway_enable", "ifconfig_igb0", "sshd_enable", "rc_conf_files",
                                  "local_startup", "defaultrouter", "pflog_enable", "syslogd_flags"])
def test_reserved_rc_vars(name):
    assert g.is_reserved_rc_var(name)
    assert g.is_reserved_rc_var(name, service="suricata")


@pytest.mark.parametrize("name, service", [("suricata_flags", None), ("suricata_enable", "suricata"),
                                           ("natd_flags", "natd"), ("pf_ids_enable", "pf_ids"),
                                           ("classifier_port", "classifier")])
def test_rc_vars_a_consumer_may_set(name, service):
    assert not g.is_reserved_rc_var(name, service=service)


def test_a_service_does_not_unreserve_what_is_reserved_by_name():
    assert g.is_reserved_rc_var("pf_ids_enable")  # without knowing the service, pf_ is pf's
    assert g.is_reserved_rc_var("kld_list", service="kld")
    assert g.is_reserved_rc_var("sshd_flags", service="sshd")


@pytest.mark.parametrize("word", ["to", "from", "proto", "label", "port", "on", "in", "out", "all", "any", "quick",
                                  "keep", "state", "inet", "inet6", "user", "group", "tag"])
def test_interfaces_named_like_pf_words_are_refused(word):
    assert g.matches("interface", word)
    assert "is reserved" in g.problem("interface", word)


def test_pf_keywords_are_parse_y_s_sorted_table():
    keywords = sorted(g.PF_KEYWORDS)
    assert len(keywords) == 134 and keywords[0] == "all" and keywords[-1] == "user"
    assert "divert-to" in g.PF_KEYWORDS and "igb0" not in g.PF_KEYWORDS


def test_schema_patterns_are_the_fullmatch_patterns():
    for kind in g.KINDS:
        compiled = re.compile(g.schema_pattern(kind))
        for value in GOOD[kind] + BAD[kind] + [v + "\n" for v in GOOD[kind]]:
            assert bool(compiled.search(value)) == bool(re.fullmatch(g.PATTERNS[kind], value)), (kind, value)


def test_schema_patterns_compile_in_ecma_and_rust_engines():
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    regress = pytest.importorskip("regress")
    for kind in g.KINDS:
        pattern = g.schema_pattern(kind)
        validator = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        ecma = regress.Regex(pattern, "u")
        for value in GOOD[kind] + BAD[kind] + [v + "\n" for v in GOOD[kind]] + ["x" + c for c in HOSTILE_CHARACTERS]:
            expected = bool(re.fullmatch(g.PATTERNS[kind], value))
            assert validator.is_valid(value) == expected, (kind, value)
            assert (ecma.find(value) is not None) == expected, (kind, value)


def test_invisible_characters_of_a_file():
    text = "a: 1 # note\u2028from: x\nb: \u202eevil\r\nc: d\re\tf\n"
    assert [(offset, g.char_name(char)) for offset, char in g.invisible_characters(text)] == [
        (11, "U+2028 LINE SEPARATOR"), (23, "U+202E RIGHT-TO-LEFT OVERRIDE"), (34, "U+000D CARRIAGE RETURN")]
    assert g.invisible_characters("a: 1\r\nb: 2\n\tc\n") == []


def test_the_module_imports_only_the_standard_library():
    """It is shipped to the hosts and run by the boot gate: nothing of the collection, nothing installed."""
    with open(g.__file__) as handle:
        tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "json", "re", "unicodedata"}, imported
    assert os.path.basename(g.__file__) == "_grammar.py"
