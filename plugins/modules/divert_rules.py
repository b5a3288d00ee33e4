#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: divert_rules
short_description: Apply a host's rendered divert rules in one transaction, only when its divert groups are whole
version_added: 0.1.0
description:
  - Brings a host's divert rules (a pf anchor or an ipfw set) to the text rendered on the
    controller, in one transaction, and changes nothing when what is loaded already agrees.
  - "pf: writes the rules to a temporary file, checks them with C(pfctl -o none -a ANCHOR -nf FILE)
    (a syntax error fails and changes nothing), reads what is loaded with C(pfctl -a ANCHOR -s rules),
    compares both in a canonical form, loads with C(pfctl -o none -a ANCHOR -f FILE) only when they
    differ, and reads back and compares again."
  - "The canonical form follows pfctl's print_rule: C({ }) lists are expanded into one rule per
    combination, C(port 80) becomes C(port = 80) (service names are mapped back to numbers), ranges
    stay C(lo:hi), C(from any to any) without ports becomes C(all), the default C(flags S/SA) of
    stateful rules is dropped, C(keep state) is made explicit, a C(/32) host loses its mask, and
    C(divert-to HOST port N) becomes C(divert-to N)."
  - "ipfw: checks the lines with C(ipfw -n -q FILE), then in one C(ipfw -f -q FILE) run empties and
    disables O(spare_set), adds the rules rewritten from C(set SET) into O(spare_set), swaps the sets
    with C(set swap), and deletes O(spare_set), which then holds the old rules. If the run fails
    part-way O(spare_set) is deleted and the live set is untouched. Loaded rules are read with
    C(ipfw -S list) and compared by number, action and the sorted set of match conditions, because
    ipfw prints options in its own order."
  - Before loading, it checks the kernel itself (as M(divert.fleet.divert_sockets) does) and refuses,
    leaving the previous rules in force, if any port the new rules divert to does not have exactly
    the sockets O(groups) declares (invariant I1, defence in depth behind the consumer role's wait).
  - "pf on FreeBSD: makes sure C(/etc/pf.conf) has an C(anchor \"ANCHOR\") line (appended at the end
    and checked with C(pfctl -nf) first), that the loaded main ruleset references the anchor (loads
    C(/etc/pf.conf) only when it does not), C(pf_enable=YES) in rc.conf, and pf enabled (C(pfctl -e)
    when C(pfctl -s info) says Disabled)."
  - "pf on OPNsense: installs C(/usr/local/etc/inc/plugins.inc.d/divert_fleet.inc), whose
    C(divert_fleet_firewall($fw)) calls C($fw->registerAnchor('ANCHOR', 'fw', 0, 'head', true)), so the
    anchor survives C(configctl filter reload), which runs when that file changed."
  - With O(boot_gate) (invariant I3), stores the wanted rules and O(groups) in
    C(/var/db/divert_fleet/) and installs the boot gate C(/usr/local/libexec/divert-fleet-gate) with
    its rc.d script C(/usr/local/etc/rc.d/divert_fleet) (C(REQUIRE LOGIN), enabled with
    C(divert_fleet_enable=YES)) and, on OPNsense, C(/usr/local/etc/rc.syshook.d/start/50-divert_fleet).
    Anchors and ipfw rules are empty after a reboot; the gate waits until every group is whole and
    only then loads the stored rules with this same transaction, or leaves them empty and logs.
author:
  - divert.fleet contributors (@divert)
options:
  backend:
    description: The host's firewall.
    type: str
    required: true
    choices: [pf, ipfw]
  rules:
    description:
      - The host's rendered rules text (pf anchor rules, or ipfw C(add N set SET ...) lines), as the
        controller renders it (C(divert.fleet.to_pf), C(divert.fleet.to_ipfw)).
      - Required when O(state=present).
    type: str
  groups:
    description:
      - Mapping of divert port to the number of sockets the spec declares on it (the group size).
      - Every port the rules divert to must be here and be whole in the kernel before a load.
    type: dict
    default: {}
  state:
    description: C(present) loads O(rules); C(absent) withdraws every divert rule (flushes the anchor or deletes the set).
    type: str
    default: present
    choices: [present, absent]
extends_documentation_fragment:
  - divert.fleet._onhost
  - divert.fleet._onhost.change
  - divert.fleet._onhost.firewall
  - divert.fleet._onhost.gate
  - divert.fleet._onhost.placement
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Runs the syntax check and the comparison, reports what would change, loads nothing. A
      group that is not whole is reported as a warning instead of a failure.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The loaded and the wanted rules, in the canonical form.
notes:
  - The ipfw backend does not enable ipfw itself (C(firewall_enable)); on OPNsense ipfw runs only
    with captive portal or the shaper, and its template flushes rules added by hand.
  - The anchor line is appended at the end of C(/etc/pf.conf); the anchor's rules are C(quick) pass
    rules, so an earlier C(quick) rule of the operator takes precedence. Placement is a security decision.
seealso:
  - module: divert.fleet.divert_sockets
  - module: divert.fleet.divert_consumers
  - name: pfctl(8)
    description: The pf control program whose output is parsed.
    link: https://man.freebsd.org/cgi/man.cgi?query=pfctl&sektion=8
  - name: ipfw(8)
    description: The ipfw control program; sets and set swap.
    link: https://man.freebsd.org/cgi/man.cgi?query=ipfw&sektion=8
"""

EXAMPLES = r"""
- name: Load the host's pf divert anchor once its groups are whole
  divert.fleet.divert_rules:
    backend: pf
    platform: freebsd
    anchor: divert_fleet
    rules: "{{ host_spec | divert.fleet.to_pf }}"
    groups:
      8000: 31
      8100: 3

- name: Load an ipfw host's rules through its spare set
  divert.fleet.divert_rules:
    backend: ipfw
    set: 5
    spare_set: 6
    rules: "{{ host_spec | divert.fleet.to_ipfw }}"
    groups: {8000: 1}

- name: Withdraw every divert rule
  divert.fleet.divert_rules:
    backend: pf
    state: absent
"""

RETURN = r"""
rules:
  description: The wanted rules in canonical form (empty for O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: ['pass in quick on igb0 inet proto tcp from any to any port = 80 keep state label "divert_fleet:web" divert-to 8000']
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [loaded 2 rule(s), pfctl -e]
boot_gate:
  description: Files and settings of the boot gate that changed.
  returned: when O(boot_gate=true)
  type: list
  elements: str
  sample: [/var/db/divert_fleet/rules]
sockets:
  description: The bound divert sockets per port, read before loading.
  returned: when rules were about to be loaded
  type: dict
  sample: {"8000": {port: 8000, bound: 31, pids: [812], commands: [suricata]}}
commands:
  description: The commands run on the host.
  returned: always
  type: list
  elements: str
  sample: [pfctl -a divert_fleet -s rules]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._argspec import PLACEMENT_ARGS
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    DEFAULT_LOCK_TIMEOUT, FreeBSDHost, HostError, HostLock)
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import make_backend
from ansible_collections.divert.fleet.plugins.module_utils._host_gate import deploy_rules


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backend=dict(type="str", required=True, choices=["pf", "ipfw"]),
            rules=dict(type="str"),
            anchor=dict(type="str", default="divert_fleet"),
            set=dict(type="int", default=5),
            spare_set=dict(type="int", default=6),
            groups=dict(type="dict", default={}),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            platform=dict(type="str", choices=["freebsd", "opnsense"]),
            lock_timeout=dict(type="int", default=DEFAULT_LOCK_TIMEOUT),
            boot_gate=dict(type="bool", default=True),
            gate_timeout=dict(type="int", default=300),
            **PLACEMENT_ARGS
        ),
        required_if=[("state", "present", ("rules",))],
        supports_check_mode=True,
    )
    params = module.params
    host = FreeBSDHost()
    try:
        platform = _host_guard.platform(host, params["platform"]) if params["platform"] else \
            _host_guard.detect_platform(host)
        backend = make_backend(host, params["backend"], params["anchor"], params["set"], params["spare_set"])
        with HostLock(host, "divert.fleet.divert_rules", params["lock_timeout"]):
            result = deploy_rules(host, backend, params["rules"] or "", params["groups"], state=params["state"],
                                  platform=platform, check_mode=module.check_mode,
                                  boot_gate=params["boot_gate"], gate_timeout=params["gate_timeout"],
                                  placement=params["placement"], priority=params["priority"])
    except HostError as exc:
        module.fail_json(msg=exc.message, commands=host.commands, **exc.details)
    diff = result.pop("diff")
    for warning in result.pop("warnings"):
        module.warn(warning)
    if module._diff:
        result["diff"] = diff
    module.exit_json(commands=host.commands, **result)


if __name__ == "__main__":
    main()
