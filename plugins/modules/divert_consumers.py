#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: divert_consumers
short_description: Configure, start and wait for a host's divert consumers, withdrawing their rules before a restart
version_added: 0.1.0
description:
  - Brings all divert consumers of one host to their spec in one call, without touching the divert
    rules except to withdraw them where a consumer must stop or restart in place. Use
    M(divert.fleet.divert_host) to change consumers and rules as one unit (blue/green restarts need it).
  - Loads C(ipdivert.ko) when it is missing, and makes it load at boot (C(kld_list) on FreeBSD,
    C(ipdivert_load="YES") in C(/boot/loader.conf.local) on OPNsense, which does not run C(rc.d/kld)).
  - Configures each consumer through its driver (rc.conf variables with C(sysrc), on OPNsense in
    C(/etc/rc.conf.d/SERVICE); OPNsense's IDS model for C(opnsense-ids)), starts consumers that are not
    running, then waits until the kernel shows every group whole.
  - A running consumer whose change needs only a reload (O(consumers[].watch) C(reload) files) is
    reloaded without rebinding. One that needs a restart (settings, sockets, port, program, C(restart)
    files) is refused unless O(allow_disruption), and then restarted in place only after every rule
    diverting to its port was withdrawn in one transaction and its pf states drained (invariant I2);
    the rules come back when M(divert.fleet.divert_rules) next applies.
  - A consumer recorded on the host but no longer given is stopped after its rules are withdrawn and
    drained, and the rc.conf variables the collection set for it are removed. A new consumer on the port
    it served takes the port over only with O(allow_disruption) (its rules withdrawn, the old group drained
    and stopped, the new one started); a consumer only renamed (the same driver and service on its port)
    keeps its running group.
  - What runs is recorded in C(/var/db/divert_fleet/consumers.json).
author:
  - divert.fleet contributors (@divert)
options:
  backend:
    description: The host's firewall, needed to withdraw rules before a stop or restart. Without it nothing is withdrawn.
    type: str
    choices: [pf, ipfw]
extends_documentation_fragment:
  - divert.fleet._consumers
  - divert.fleet._onhost
  - divert.fleet._onhost.change
  - divert.fleet._onhost.firewall
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports per consumer what would change, which rules would be withdrawn, and starts, restarts and writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The managed rc.conf variables before and after.
seealso:
  - module: divert.fleet.divert_sockets
  - module: divert.fleet.divert_rules
  - name: sysrc(8)
    description: The rc.conf editor used for the consumers' variables.
    link: https://man.freebsd.org/cgi/man.cgi?query=sysrc&sektion=8
"""

EXAMPLES = r"""
- name: Consumers of this host, bound before any rule diverts to them
  divert.fleet.divert_consumers:
    backend: pf
    anchor: divert_fleet
    consumers:
      - name: ids
        port: 8000
        sockets: 31
        service: suricata
        rc_vars: {suricata_flags: "-d 8000"}
        ready_timeout: 120
      - name: probe
        port: 8200
        sockets: 3
        service: divert_reflector
        reference: true
    reference_program: "{{ lookup('ansible.builtin.file', 'divert-reflector') }}"
"""

RETURN = r"""
consumers:
  description: Per consumer, what was done and why, and what runs now.
  returned: success
  type: list
  elements: dict
  sample:
    - name: ids
      driver: suricata
      service: suricata
      port: 8000
      standby_port: 8001
      live_port: 8000
      sockets: 15
      action: reload
      reasons: [/usr/local/etc/suricata/rules/local.rules changed]
      changed: true
      bound: 15
      policy: >-
        sockets, port, settings, program: a new group on the idle one of its port and standby port 8001;
        the live port alternates; ...: reload (SIGUSR2), no rebind
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [kldload ipdivert, started suricata on port 8000 (not running)]
live_ports:
  description: The port each consumer's serving group is on.
  returned: success
  type: dict
  sample: {ids: 8000}
sockets:
  description: Bound divert sockets per port at the end.
  returned: success
  type: dict
  sample: {"8000": {port: 8000, bound: 15, pids: [812], commands: [suricata]}}
commands:
  description: The commands run on the host.
  returned: always
  type: list
  elements: str
  sample: [sysctl -x net.inet.divert.pcblist]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._argspec import CHANGE_ARGS, CONSUMERS_ARGS, FIREWALL_ARGS
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import make_backend
from ansible_collections.divert.fleet.plugins.module_utils._host_lifecycle import run_unit
from ansible_collections.divert.fleet.plugins.module_utils._host_os import FreeBSDHost, HostError, HostLock


def main():
    argument_spec = dict(backend=dict(type="str", choices=["pf", "ipfw"]))
    for part in (CONSUMERS_ARGS, FIREWALL_ARGS, CHANGE_ARGS):
        argument_spec.update(part)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    host = FreeBSDHost()
    try:
        platform = _host_guard.platform(host, params["platform"]) if params["platform"] else \
            _host_guard.detect_platform(host)
        backend = None
        if params["backend"]:
            backend = make_backend(host, params["backend"], params["anchor"], params["set"], params["spare_set"])
        with HostLock(host, "divert.fleet.divert_consumers", params["lock_timeout"]):
            result = run_unit(host, backend, params["consumers"], None, {}, platform,
                              check_mode=module.check_mode, allow_disruption=params["allow_disruption"],
                              reference_program=params["reference_program"])
    except HostError as exc:
        module.fail_json(msg=exc.message, commands=host.commands, changed=bool(exc.details.get("done")),
                         **exc.details)
    diff = result.pop("diff")
    for warning in result.pop("warnings"):
        module.warn(warning)
    if module._diff:
        result["diff"] = diff["settings"]
    for key in ("live_rules", "rules"):
        result.pop(key, None)
    module.exit_json(commands=host.commands, **result)


if __name__ == "__main__":
    main()
