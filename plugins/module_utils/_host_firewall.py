# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two firewalls' divert rules on a host: the pf anchor and the ipfw set, and pf's main ruleset.

Private to the divert.fleet collection; part of the on-host library (standard library only,
see `_host_os`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    DEFAULT_ANCHOR, OPNSENSE_PLUGIN, PF_CONF, HostError, IpfwNotRunning, _unlink)
from ansible_collections.divert.fleet.plugins.module_utils._host_parse import (
    ipfw_add_lines, ipfw_canonical, ipfw_divert_ports, ipfw_list_to_add_lines, pf_canonical, pf_divert_ports)

# --- backends -------------------------------------------------------------------


class PfBackend:
    """One pf anchor. fact: `pfctl -a NAME -f FILE` replaces one anchor's rules in one
    transaction; `pfctl -n` parses without loading; loading the main ruleset does not touch
    rules loaded into other anchors."""

    name = "pf"

    def __init__(self, host, anchor):
        self.host = host
        self.anchor = anchor
        self.module_loaded = True  # until pfctl says /dev/pf is missing

    def ensure_module(self, check_mode):
        """fact: pf.ko may not be loaded on a fresh FreeBSD host (no /dev/pf). Loading it does not
        filter anything until `pfctl -e`, and pf's default is to pass, so it is safe to load here;
        rc.conf's pf_enable loads it at boot."""
        if self.module_loaded:
            return []
        if not check_mode:
            self.host.run_ok(["kldload", "pf"], "loading pf.ko")
            self.module_loaded = True
        return ["kldload pf"]

    def check(self, text):
        if not self.module_loaded:
            return  # check mode on a host without pf.ko: pfctl cannot parse without /dev/pf
        path = self.host.scratch_file(text)
        try:
            self.host.run_ok(["pfctl", "-o", "none", "-a", self.anchor, "-nf", path],
                             "syntax check of the pf rules for anchor %s" % self.anchor)
        finally:
            _unlink(path)

    def loaded_text(self):
        rc, out, err = self.host.run(["pfctl", "-a", self.anchor, "-s", "rules"])
        if rc != 0:
            if "/dev/pf" in err:  # pf.ko not loaded: no anchor can hold anything
                self.module_loaded = False
                return ""
            # An anchor nothing was ever loaded into does not exist yet: pfctl fails with EINVAL.
            if "Invalid argument" in err or "No such file" in err:
                return ""
            raise HostError("reading the rules of pf anchor %s failed on %s: %s"
                            % (self.anchor, self.host.name, err.strip()), stderr=err)
        return out

    def canonical(self, text):
        return pf_canonical(text)

    def shown(self, loaded_text, wanted_text):
        """(loaded, wanted) rules for a person's diff: pfctl's own printed form for both (the
        canonical form is print_rule's, lists expanded)."""
        return pf_canonical(loaded_text), pf_canonical(wanted_text)

    def divert_ports(self, text):
        return pf_divert_ports(text)

    def load(self, text):
        path = self.host.scratch_file(text)
        try:
            # -o none: no optimizer, so the loaded rules read back as written (the basic
            # optimizer may merge address lists into automatic tables).
            self.host.run_ok(["pfctl", "-o", "none", "-a", self.anchor, "-f", path],
                             "loading pf anchor %s" % self.anchor)
        finally:
            _unlink(path)

    def flush(self):
        self.host.run_ok(["pfctl", "-a", self.anchor, "-F", "rules"], "flushing pf anchor %s" % self.anchor)

    def without_ports(self, loaded_text, ports):
        """The loaded rules minus those diverting to `ports`, as a loadable text."""
        keep = [line for line in loaded_text.splitlines()
                if line.strip() and not (pf_divert_ports(line) & set(ports))]
        return "\n".join(keep) + ("\n" if keep else "")

    def withdraw_ports(self, ports, check_mode=False):
        """Reload the anchor without the rules diverting to `ports`; the withdrawn rules."""
        loaded = self.loaded_text()
        withdrawn = [line.strip() for line in loaded.splitlines()
                     if line.strip() and pf_divert_ports(line) & set(ports)]
        if withdrawn and not check_mode:
            remaining = self.without_ports(loaded, ports)
            if remaining.strip():
                self.load(remaining)
            else:
                self.flush()
        return withdrawn


class IpfwBackend:
    """One ipfw set with a spare. fact: rules 1..65534 in sets 0..31, `ipfw set swap A B` swaps
    two sets atomically; a rules file is run as `ipfw -q /abs/path`, one command per line; `-n`
    checks syntax only."""

    name = "ipfw"

    def __init__(self, host, rule_set, spare_set):
        self.host = host
        self.rule_set = rule_set
        self.spare_set = spare_set
        if rule_set == spare_set or 31 in (rule_set, spare_set):
            raise HostError("ipfw set %d and spare set %d must differ and not be 31 (flush spares set 31)"
                            % (rule_set, spare_set))

    def ensure_module(self, check_mode):
        """ipfw is never started here: its default rule denies everything (see list_output)."""
        return []

    def check(self, text):
        lines = ipfw_add_lines(text, self.rule_set, self.spare_set)
        if not lines:
            return
        path = self.host.scratch_file("\n".join(lines) + "\n")
        try:
            self.host.run_ok(["ipfw", "-n", "-q", path], "syntax check of the ipfw rules")
        finally:
            _unlink(path)

    def list_output(self):
        rc, out, err = self.host.run(["ipfw", "-S", "list"])
        if rc != 0 and "Protocol not available" in err:
            # ipfw.ko absent (ENOPROTOOPT from the IP_FW3 sockopt). Loading it here would apply its
            # default rule, which denies everything unless the operator chose otherwise at boot:
            # enabling ipfw is the operator's decision, not a side effect of a divert rollout.
            raise IpfwNotRunning(
                "ipfw is not running on %s (ipfw.ko is not loaded): enable it with your own ruleset first "
                "(firewall_enable=YES and firewall_script or firewall_type in rc.conf, then service ipfw "
                "start); divert.fleet does not start ipfw, whose default rule denies all traffic" % self.host.name,
                command="ipfw -S list", rc=rc, stderr=err)
        if rc != 0:
            raise HostError("listing ipfw rules failed on %s: `ipfw -S list` exited %d: %s"
                            % (self.host.name, rc, (err or out).strip()), command="ipfw -S list", rc=rc, stderr=err)
        return out

    def loaded_text(self):
        return "\n".join(line for line in self.list_output().splitlines()
                         if re.match(r"^\d+\s+set\s+%d\s" % self.rule_set, line.strip())) + "\n"

    def canonical(self, text):
        return ipfw_canonical(text, self.rule_set)

    def shown(self, loaded_text, wanted_text):
        """(loaded, wanted) rules for a person's diff, in ipfw's own syntax: the loaded ones as
        `ipfw -S list` printed them; each wanted rule the same as a loaded one as that printed
        line, the others as the `add` command that loads them, so only real changes differ."""
        loaded = [line.strip() for line in loaded_text.splitlines() if line.strip()]
        printed = dict(zip(ipfw_canonical("\n".join(loaded), self.rule_set), loaded))
        wanted = []
        for line in wanted_text.splitlines():
            rule = ipfw_canonical(line, self.rule_set)
            if rule:
                wanted.append(printed.get(rule[0], line.strip()))
        return loaded, wanted

    def divert_ports(self, text):
        return ipfw_divert_ports(text)

    def _swap_in(self, add_lines):
        """Load `add_lines` (already in the spare set) and swap them live, in one ipfw run.

        Sequence: empty and disable the spare set, add, swap, delete the spare set (which then
        holds the old rules). `ipfw -q FILE` stops at the first failing line; -f keeps a
        delete of an empty set from stopping it. On failure the spare set is deleted: before
        the swap it holds the partial new rules, after it the old ones, so the live set is
        never left half-loaded (I4).
        """
        script = ["delete set %d" % self.spare_set, "set disable %d" % self.spare_set]
        script += add_lines
        script += ["set swap %d %d" % (self.rule_set, self.spare_set), "delete set %d" % self.spare_set,
                   "set enable %d" % self.spare_set]
        path = self.host.scratch_file("\n".join(script) + "\n")
        try:
            rc, out, err = self.host.run(["ipfw", "-f", "-q", path])
        finally:
            _unlink(path)
        if rc != 0:
            self.host.run(["ipfw", "-f", "-q", "delete", "set", str(self.spare_set)])
            raise HostError("loading ipfw set %d through spare set %d failed on %s (spare set deleted, "
                            "live set untouched): %s" % (self.rule_set, self.spare_set, self.host.name,
                                                         (err or out).strip()), stderr=err)

    def load(self, text):
        self._swap_in(ipfw_add_lines(text, self.rule_set, self.spare_set))

    def flush(self):
        self.host.run_ok(["ipfw", "-f", "-q", "delete", "set", str(self.rule_set)],
                         "deleting ipfw set %d" % self.rule_set)

    def withdraw_ports(self, ports, check_mode=False):
        try:
            listing = self.list_output()
        except IpfwNotRunning:
            return []  # without ipfw nothing diverts: there is nothing to withdraw
        withdrawn = [line.strip() for line in listing.splitlines()
                     if re.match(r"^\d+\s+set\s+%d\s" % self.rule_set, line.strip())
                     and ipfw_divert_ports(line) & set(ports)]
        if withdrawn and not check_mode:
            remaining = ipfw_list_to_add_lines(listing, self.rule_set, self.spare_set, drop_ports=ports)
            if remaining:
                self._swap_in(remaining)
            else:
                self.flush()
        return withdrawn


def make_backend(host, backend, anchor=DEFAULT_ANCHOR, rule_set=5, spare_set=6):
    """The backend, its anchor or sets checked as the spec checks them (`_host_guard`)."""
    if backend == "pf":
        return PfBackend(host, _host_guard.anchor(anchor))
    if backend == "ipfw":
        _host_guard.ipfw_sets(rule_set, spare_set)
        return IpfwBackend(host, rule_set, spare_set)
    raise HostError("unknown backend %r (pf or ipfw)" % backend)


# --- pf main ruleset: the anchor reference ---------------------------------------

def _anchor_line_re(anchor):
    return re.compile(r'^\s*anchor\s+"?%s"?(\s|$)' % re.escape(anchor), re.M)


PLACEMENTS = ("head", "tail")
DEFAULT_PLACEMENT = {"freebsd": "tail", "opnsense": "head"}
_FILTER_WORDS = ("pass", "block", "match", "anchor", "antispoof")


def ensure_pf_enabled(host, check_mode, module_loaded=True):
    """`pfctl -e` if `pfctl -s info` says Disabled (print_status: `Status: Enabled|Disabled`).

    In check mode on a host where pf.ko is not loaded yet there is nothing to read: it would be
    enabled after loading."""
    if not module_loaded and check_mode:
        return True
    out = host.run_ok(["pfctl", "-s", "info"], "reading pf status")
    match = re.search(r"Status:\s+(Enabled|Disabled)", out)
    if match and match.group(1) == "Enabled":
        return False
    if not check_mode:
        host.run_ok(["pfctl", "-e"], "enabling pf")
    return True


def pf_conf_with_anchor(conf, anchor, placement):
    """pf.conf with the anchor's reference added: `tail` appends it (after the operator's own
    rules: their block rules still apply), `head` puts it before the first filter rule (after
    options, normalisation, queueing and translation, which pf.conf keeps first): then every
    packet a divert rule matches is passed, whatever the operator's rules say."""
    block = '# divert.fleet: divert rules, loaded with pfctl -a %s\nanchor "%s"\n' % (anchor, anchor)
    lines = conf.splitlines(True)
    if placement == "head":
        for index, line in enumerate(lines):
            words = line.split("#", 1)[0].split()
            if words and words[0] in _FILTER_WORDS:
                return "".join(lines[:index]) + block + "".join(lines[index:])
    return conf + ("" if conf.endswith("\n") or not conf else "\n") + block


def ensure_freebsd_anchor_reference(host, anchor, check_mode, placement="tail", module_loaded=True):
    """/etc/pf.conf references the anchor and the loaded main ruleset does too.

    `placement` is the operator's security decision (freebsd-facts.md, OPNsense: ruleset; README):
    see pf_conf_with_anchor. The anchor's rules are `quick` pass rules. Main ruleset reloads do not
    touch the anchor's rules. An existing reference is left where it is.
    """
    changes = []
    conf = host.read_file(PF_CONF) or ""
    if not _anchor_line_re(anchor).search(conf):
        candidate = pf_conf_with_anchor(conf, anchor, placement)
        path = host.scratch_file(candidate)
        try:
            # pfctl -n parses without /dev/pf (pfctl.c opens it read-only and goes on without it)
            host.run_ok(["pfctl", "-nf", path], "syntax check of %s with the anchor added" % PF_CONF)
        finally:
            _unlink(path)
        if not check_mode:
            host.write_file(PF_CONF, candidate, 0o644)
        changes.append("added anchor \"%s\" at the %s of %s" % (anchor, placement, PF_CONF))
    if not module_loaded and check_mode:
        return changes + ["loaded %s" % PF_CONF]  # pf.ko would be loaded first: nothing is loaded yet
    main = host.run_ok(["pfctl", "-s", "rules"], "reading the main pf ruleset")
    if changes or not re.search(r'^anchor "%s"' % re.escape(anchor), main, re.M):
        if not check_mode:
            host.run_ok(["pfctl", "-f", PF_CONF], "loading %s" % PF_CONF)
        changes.append("loaded %s" % PF_CONF)
    return changes


def opnsense_plugin(anchor, placement="head", priority=0):
    return (
        "<?php\n\n"
        "/*\n"
        " * Installed by the divert.fleet Ansible collection. Registers the divert anchor (%s of the\n"
        " * filter rules, priority %d), so that `configctl filter reload` keeps it; its rules are\n"
        " * loaded separately with `pfctl -a %s -f`.\n"
        " */\n\n"
        "function divert_fleet_firewall($fw)\n"
        "{\n"
        "    $fw->registerAnchor('%s', 'fw', %d, '%s', true);\n"
        "}\n" % (placement, priority, anchor, anchor, priority, placement))


def ensure_opnsense_anchor_reference(host, anchor, check_mode, placement="head", priority=0):
    """OPNsense: a plugins.inc.d hook registers the anchor (Plugin::registerAnchor($name, $type,
    $priority, $placement, $quick)); `configctl filter reload` when the hook changed. A head anchor
    of quick divert pass rules wins over every OPNsense filter rule (freebsd-facts.md, OPNsense)."""
    changes = []
    if host.ensure_file(OPNSENSE_PLUGIN, opnsense_plugin(anchor, placement, priority), 0o644, check_mode):
        changes.append("installed %s" % OPNSENSE_PLUGIN)
        if not check_mode:
            host.run_ok(["configctl", "filter", "reload"], "reloading the OPNsense filter")
        changes.append("configctl filter reload")
    return changes
