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
  - Brings all divert consumers of one host to their spec in one call.
  - Loads C(ipdivert.ko) when C(kldstat -q -m ipdivert) says it is missing, and adds C(ipdivert) to
    C(kld_list) in rc.conf so it is loaded at boot.
  - Sets each consumer's rc.conf variables with C(sysrc) (read with C(sysrc -e), only differing ones
    are written) and C(SERVICE_enable=YES).
  - "Reference consumers (O(consumers[].reference)): installs O(reference_program) as
    C(/usr/local/libexec/divert-reflector) and an rc.d script C(/usr/local/etc/rc.d/SERVICE) that
    reads C(SERVICE_port), C(SERVICE_sockets) and C(SERVICE_user), which are set from the consumer's
    port and sockets (user C(nobody)) unless O(consumers[].rc_vars) gives them."
  - Starts services that are not running (C(service SERVICE onestatus)), then waits (as
    M(divert.fleet.divert_sockets) does) until every port has exactly the sockets its consumers declare.
  - A running consumer whose configuration changed (rc.conf variables, socket count, port, rc.d
    script or program), or whose group is not whole, is restarted only after every rule diverting to
    its port was withdrawn from the host in one transaction (with pf the anchor is reloaded without those
    rules, with ipfw the set is reloaded without them through the spare set and C(set swap)). The same
    is done before starting a consumer that is not running. The rules come back when
    M(divert.fleet.divert_rules) next applies, which checks that the group is whole first (invariant I2, simple form).
  - What was applied last is recorded in C(/var/db/divert_fleet/consumers.json) to notice changes.
author:
  - divert.fleet contributors (@divert)
options:
  consumers:
    description: The host's resolved consumers.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Consumer name.
        type: str
        required: true
      port:
        description: Divert port.
        type: int
        required: true
      sockets:
        description: Sockets this consumer binds on the port.
        type: int
        required: true
      lb:
        description: Whether the consumer sets C(SO_REUSEPORT_LB) (informational here).
        type: bool
        default: true
      service:
        description: The rc.d service that runs the consumer.
        type: str
        required: true
      rc_vars:
        description: rc.conf variables of the service.
        type: dict
        default: {}
      ready_timeout:
        description: Seconds to wait for the consumer's sockets.
        type: int
        default: 60
      reference:
        description: The consumer is the collection's reference consumer (divert-reflector).
        type: bool
        default: false
      description:
        description: Free text, ignored.
        type: str
  reference_program:
    description:
      - Source text of the reference consumer, read on the controller from the role's files.
      - Required when a consumer has O(consumers[].reference=true).
    type: str
  backend:
    description: The host's firewall, needed to withdraw rules before a restart. Without it nothing is withdrawn.
    type: str
    choices: [pf, ipfw]
  anchor:
    description: The pf anchor holding the divert rules.
    type: str
    default: divert_fleet
  set:
    description: The ipfw set holding the divert rules.
    type: int
    default: 5
  spare_set:
    description: The ipfw spare set used to reload the set without a port's rules.
    type: int
    default: 6
extends_documentation_fragment:
  - divert.fleet._onhost
  - divert.fleet._onhost.change
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
  description: Per consumer, what changed.
  returned: always
  type: list
  elements: dict
  sample:
    - name: ids
      service: suricata
      port: 8000
      sockets: 31
      changed: true
      action: restart
      was_running: true
      rc_vars_changed: {suricata_flags: {before: "-d 8000", after: "-d 8000 -v"}}
      rc_script_changed: false
      bound: 31
withdrawn:
  description: The loaded rules withdrawn before (re)starting consumers, as the firewall printed them.
  returned: always
  type: list
  elements: str
  sample: ['pass in quick on igb0 inet proto tcp from any to any port = 80 flags S/SA keep state divert-to 8000']
actions:
  description: Host-wide actions (ipdivert, program installed, rules withdrawn).
  returned: always
  type: list
  elements: str
  sample: [kldload ipdivert]
sockets:
  description: Bound divert sockets per port at the end.
  returned: always
  type: dict
  sample: {"8000": {port: 8000, bound: 31, pids: [812], commands: [suricata]}}
commands:
  description: The commands run on the host.
  returned: always
  type: list
  elements: str
  sample: [kldstat -q -m ipdivert]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.divert.fleet.plugins.module_utils import _host_guard
from ansible_collections.divert.fleet.plugins.module_utils._host_os import (
    DEFAULT_LOCK_TIMEOUT, FreeBSDHost, HostError, HostLock)
from ansible_collections.divert.fleet.plugins.module_utils._host_firewall import make_backend
from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import ensure_consumers

CONSUMER_OPTIONS = dict(
    name=dict(type="str", required=True),
    port=dict(type="int", required=True),
    sockets=dict(type="int", required=True),
    lb=dict(type="bool", default=True),
    service=dict(type="str", required=True),
    rc_vars=dict(type="dict", default={}),
    ready_timeout=dict(type="int", default=60),
    reference=dict(type="bool", default=False),
    description=dict(type="str"),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            consumers=dict(type="list", elements="dict", required=True, options=CONSUMER_OPTIONS),
            reference_program=dict(type="str"),
            backend=dict(type="str", choices=["pf", "ipfw"]),
            anchor=dict(type="str", default="divert_fleet"),
            set=dict(type="int", default=5),
            spare_set=dict(type="int", default=6),
            platform=dict(type="str", choices=["freebsd", "opnsense"]),
            lock_timeout=dict(type="int", default=DEFAULT_LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = FreeBSDHost()
    try:
        if params["platform"]:
            _host_guard.platform(host, params["platform"])
        backend = None
        if params["backend"]:
            backend = make_backend(host, params["backend"], params["anchor"], params["set"], params["spare_set"])
        with HostLock(host, "divert.fleet.divert_consumers", params["lock_timeout"]):
            result = ensure_consumers(host, params["consumers"], params["reference_program"], backend,
                                      check_mode=module.check_mode)
    except HostError as exc:
        module.fail_json(msg=exc.message, commands=host.commands, **exc.details)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(commands=host.commands, **result)


if __name__ == "__main__":
    main()
