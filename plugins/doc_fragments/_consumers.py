# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The consumers option of divert_host and divert_consumers. Private to the divert.fleet collection."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  consumers:
    description:
      - The host's resolved consumers (the C(host.consumers) of M(divert.fleet.render)).
      - Each is checked on the host with the spec's own definitions before anything changes.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Consumer name.
        type: str
        required: true
      port:
        description: Divert port of the primary instance.
        type: int
        required: true
      standby_port:
        description:
          - The port a new group binds on while the serving one keeps serving, when a running group
            must restart or change size (blue/green, invariant I5). The live port alternates between
            O(consumers[].port) and this one; the record on the host says which is live.
          - Drivers C(reflector) and C(suricata) only (the others run one instance).
        type: int
      sockets:
        description: Sockets this consumer binds on its port.
        type: int
        required: true
      lb:
        description: Whether the consumer sets C(SO_REUSEPORT_LB) (informational here).
        type: bool
        default: true
      driver:
        description:
          - How the consumer is run. C(rc) any rc.d service configured by rc.conf variables (on OPNsense
            in C(/etc/rc.conf.d/SERVICE)); C(reflector) the collection's reference consumer; C(suricata)
            Suricata from FreeBSD ports (C(suricata_divertport) and one C(-d PORT) per further listener,
            at most 16); C(opnsense-ids) OPNsense's own Suricata through its IDS model (port 8000 only).
          - Omitted, C(reflector) when O(consumers[].reference=true), else C(rc).
        type: str
        choices: [rc, reflector, suricata, opnsense-ids]
      service:
        description: The rc.d service that runs the consumer.
        type: str
        required: true
      rc_vars:
        description: rc.conf variables of the service, C(@PORT@) and C(@SOCKETS@) filled in for the primary instance.
        type: dict
        default: {}
      rc_vars_template:
        description: The same variables with C(@PORT@) and C(@SOCKETS@) left in, filled in per instance on the host.
        type: dict
      reload:
        description:
          - How a running instance takes a reload-only change without rebinding its sockets, so nothing
            remaps. C(rc) is C(service SERVICE reload); a signal name is sent to the service's process.
          - Defaults by driver - C(reflector) and C(suricata) C(SIGUSR2) (Suricata reloads its rules on it),
            C(opnsense-ids) C(configctl ids reload), C(rc) none (every change restarts).
        type: str
        choices: [rc, configctl, SIGHUP, SIGUSR1, SIGUSR2]
      watch:
        description:
          - Files on the host whose change the consumer must take - C(restart) (a new group) or C(reload).
            Paths are absolute; the last component may be a glob. The program itself (the driver's binary)
            is always watched for restart.
        type: dict
      ready_timeout:
        description: Seconds to wait for the consumer's sockets.
        type: int
        default: 60
      drain_timeout:
        description: Seconds to wait for the pf states of an old group's rules to end before the old group stops.
        type: int
        default: 300
      reference:
        description: The consumer is the collection's reference consumer (C(driver=reflector)).
        type: bool
        default: false
      description:
        description: Free text, ignored.
        type: str
  reference_program:
    description:
      - Source text of the reference consumer, read on the controller from the consumer role's files.
      - Required when a consumer's driver is C(reflector).
    type: str
  allow_disruption:
    description:
      - Allow a running group that must restart and has no standby port to be restarted in place - its
        rules withdrawn, its pf states drained (or O(consumers[].drain_timeout)), restarted, bound again.
        Its flows remap and its traffic is not inspected meanwhile.
      - Without it such a change is refused before anything on the host changes, with the numbers.
    type: bool
    default: false
"""
