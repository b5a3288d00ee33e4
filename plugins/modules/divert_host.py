#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: divert_host
short_description: One host's divert consumers and rules, changed as one unit in the order the invariants fix
version_added: 0.2.0
description:
  - Brings one host's consumers, divert rules and boot gate to the spec in one call, so a host's change is a
    unit (invariant I6) - a failure leaves that host running what it ran before, and no other host waits on it.
  - "Decides first, for every consumer, what its change needs (and refuses before touching anything what it
    may not do): nothing; start (no group yet); reload (only O(consumers[].watch) C(reload) files changed:
    the running instance is told without rebinding, so nothing remaps); a blue/green switch (the group must
    restart or change size and the consumer has a O(consumers[].standby_port)); an in-place restart (no
    standby port, only with O(allow_disruption)); or removal (recorded on the host, gone from the spec).
    A new consumer whose port still serves one that left the spec starts on its standby port, and the old
    group drains once the rules switch; without a standby port it is refused, or with O(allow_disruption)
    takes the port over (C(takeover) - the port's rules withdrawn, the old group drained and stopped, the
    new one started and whole, then the rules). A consumer only renamed in the spec (its driver and
    service serving on its port) keeps its running group under the new name."
  - Then - new groups are configured and started beside the serving ones and the kernel must show each
    whole (I1), else they are stopped again and nothing else changes; reloads; allowed in-place restarts
    (their rules withdrawn, their pf states drained); the rules with every consumer's live port in one
    transaction (C(pfctl -a ANCHOR -f), or the ipfw spare set and C(set swap), I4); the old groups drain -
    no pf state that a rule diverting to their port created is left, or O(consumers[].drain_timeout) passed -
    and only then stop (I2, I5); the record and the boot gate's copy (I3).
  - "Draining reads C(pfctl -ss -vv): each state carries the number of the anchor rule and of the rule in
    that anchor it was created under (sbin/pfctl/pf_print_state.c); the rules that diverted to the old port
    are known by their numbers in the anchor as it was loaded before the switch. ipfw keeps no state for a
    divert rule: its flows follow the swap at once."
  - The rendered rules name the spec's ports; on the host each rule of a consumer whose live port is its
    standby port is loaded with that port instead. The live ports are in the result, in check mode and diff.
author:
  - divert.fleet contributors (@divert)
options:
  backend:
    description: The host's firewall.
    type: str
    required: true
    choices: [pf, ipfw]
  rules:
    description: The host's rules as M(divert.fleet.render) rendered them (the spec's ports).
    type: str
    required: true
  groups:
    description: Port to socket count, as declared (the spec's ports).
    type: dict
    default: {}
  job:
    description:
      - Set by the module's action plugin, not by playbooks. When the change has to wait (new groups binding,
        old groups draining), the module hands the change to a child process, answers at once, and the
        child writes what it waits for, every few seconds, and at last the result, to this file on the host,
        which the action plugin reads and shows. A change that waits for nothing never does this.
    type: path
extends_documentation_fragment:
  - divert.fleet._consumers
  - divert.fleet._onhost
  - divert.fleet._onhost.change
  - divert.fleet._onhost.firewall
  - divert.fleet._onhost.gate
  - divert.fleet._onhost.placement
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports per consumer what its change needs and which port would serve, the rule diff with the live ports, and changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The consumers' settings (rc.conf variables or OPNsense's IDS model) and the loaded rules, before and after.
seealso:
  - module: divert.fleet.divert_consumers
  - module: divert.fleet.divert_rules
  - module: divert.fleet.divert_sockets
"""

EXAMPLES = r"""
- name: This host's consumers and rules, as one unit
  divert.fleet.divert_host:
    backend: "{{ rendered.backend }}"
    platform: "{{ rendered.platform }}"
    rules: "{{ rendered.text }}"
    groups: "{{ rendered.groups }}"
    anchor: "{{ rendered.host.pf.anchor }}"
    consumers: "{{ rendered.host.consumers }}"
    reference_program: "{{ lookup('ansible.builtin.file', 'divert-reflector', rstrip=false) }}"
  vars:
    rendered: "{{ hostvars['localhost']['divert_fleet_rendered']['hosts'][inventory_hostname] }}"
"""

RETURN = r"""
consumers:
  description:
    - Per consumer, what its change needed and why, and what serves now.
    - C(action) is null (nothing), C(start), C(reload), C(switch), C(restart) or C(takeover).
  returned: success
  type: list
  elements: dict
  sample:
    - {name: ips, driver: suricata, service: suricata_standby, port: 8010, standby_port: 8011, live_port: 8011,
       sockets: 7, action: switch, reasons: ["sockets 5 -> 7"], changed: true, bound: 7,
       policy: "sockets, port, settings, program: a new group on the idle one of its port and standby port 8011; the live port alternates"}
live_ports:
  description: The port each consumer's serving group is on.
  returned: success
  type: dict
  sample: {ips: 8011}
live_groups:
  description: Live port to socket count, as the rules and the boot gate use them.
  returned: success
  type: dict
  sample: {"8011": 7}
rules:
  description: The loaded rules in canonical form, with the live ports.
  returned: success
  type: list
  elements: str
  sample: ['pass in quick on igb0 inet proto tcp from any to any port = 80 keep state label "divert_fleet:web" divert-to 8011']
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [started suricata_standby on port 8011 (sockets 5 -> 7), loaded 2 rule(s), port(s) 8010 drained in 4 s]
boot_gate:
  description: Files and settings of the boot gate that changed.
  returned: when O(boot_gate=true)
  type: list
  elements: str
  sample: [/var/db/divert_fleet/rules]
sockets:
  description: Bound divert sockets per port at the end.
  returned: success
  type: dict
  sample: {"8011": {port: 8011, bound: 7, pids: [812], commands: [suricata]}}
done:
  description: On failure, what was done before it; the message says what the host runs now.
  returned: failure
  type: list
  elements: str
  sample: [started suricata_standby on port 8011 (sockets 5 -> 7)]
progress:
  description: What the change waited for, as it was shown while it waited.
  returned: success
  type: list
  elements: str
  sample: ["waiting 5s: host fw1 port 8011: 7 socket(s) declared, 4 bound"]
commands:
  description: The commands run on the host.
  returned: always
  type: list
  elements: str
  sample: [sysctl -x net.inet.divert.pcblist, pfctl -a divert_fleet -s rules]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.divert.fleet.plugins.module_utils import _host_gate, _host_guard, _host_rules
from ansible_collections.divert.fleet.plugins.module_utils._argspec import (
    CHANGE_ARGS, CONSUMERS_ARGS, FIREWALL_ARGS, PLACEMENT_ARGS)
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import make_backend
from ansible_collections.divert.fleet.plugins.module_utils._host_lifecycle import run_unit
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    Detached, FreeBSDHost, HostError, HostLock, Progress)


def main():
    argument_spec = dict(
        backend=dict(type="str", required=True, choices=["pf", "ipfw"]),
        rules=dict(type="str", required=True),
        groups=dict(type="dict", default={}),
        boot_gate=dict(type="bool", default=True),
        gate_timeout=dict(type="int", default=300),
        job=dict(type="path"),
    )
    for part in (CONSUMERS_ARGS, FIREWALL_ARGS, PLACEMENT_ARGS, CHANGE_ARGS):
        argument_spec.update(part)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    host = FreeBSDHost()
    progress = Progress(params["job"])
    if params["job"]:
        _host_gate.preload()
    try:
        try:
            result = _change(host, params, module.check_mode, progress)
        except Detached as exc:
            module.exit_json(changed=False, detached=True, job=exc.job)
        except HostError as exc:
            failure = dict(exc.details, msg=exc.message, commands=host.commands, changed=bool(exc.details.get("done")),
                           failed=True)
            if progress.child:
                progress.finish(failure)
            failure.pop("failed")
            module.fail_json(**failure)
        diff = result.pop("diff")
        result["warnings_text"] = result.pop("warnings")
        if module._diff:
            result["diff"] = [d for d in (diff["settings"], diff["rules"]) if d]
        result.pop("live_rules")
        result["commands"] = host.commands
        result["progress"] = progress.messages
        if progress.child:
            progress.finish(result)
    except Exception:  # pylint: disable=broad-except
        if progress.child:  # nobody sees a child's traceback: the action plugin must
            progress.finish({"failed": True, "msg": "divert_host failed: %s" % traceback.format_exc()})
        raise
    for warning in result.pop("warnings_text"):
        module.warn(warning)
    module.exit_json(**result)


def _change(host, params, check_mode, progress):
    platform = _host_guard.platform(host, params["platform"]) if params["platform"] else \
        _host_guard.detect_platform(host)
    backend = make_backend(host, params["backend"], params["anchor"], params["set"], params["spare_set"])
    with HostLock(host, "divert.fleet.divert_host", params["lock_timeout"]):
        result = run_unit(host, backend, params["consumers"], params["rules"], params["groups"], platform,
                          check_mode=check_mode, allow_disruption=params["allow_disruption"],
                          reference_program=params["reference_program"], placement=params["placement"],
                          priority=params["priority"], progress=progress,
                          rc_also=(_host_rules.RC_VARS if backend.name == "pf" else ()) +
                          (_host_gate.RC_VARS if params["boot_gate"] else ()))
        if params["boot_gate"]:
            gate = _host_gate.install_boot_gate(host, backend, result["live_rules"], result["live_groups"],
                                                platform, params["gate_timeout"], check_mode)
            result["boot_gate"] = gate
            result["changed"] = result["changed"] or bool(gate)
    return result


if __name__ == "__main__":
    main()
