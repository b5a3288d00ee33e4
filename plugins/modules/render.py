# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: divert.fleet.render is an action plugin (plugins/action/render.py) that
# runs on the controller; there is no module to run on a host.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: render
short_description: Render one host's pf anchor or ipfw rules from a divert.fleet fleet spec
version_added: 0.1.0
author: divert.fleet maintainers (@divert)
description:
  - Validates a fleet spec, resolves one of its hosts (profile merged in) and returns the host's
    divert rules as text (a pf anchor with C(divert-to) rules, or an ipfw rules file with C(divert)
    rules), with the digest of the host's resolved spec, the ports the rules divert to, the resolved
    host and its rollout plan.
  - The text is deterministic and byte for byte what C(divert-fleet render FILE --host NAME) prints.
  - Runs on the controller with no connection to the host, so a play can render the rules of hosts it
    cannot reach, and the deploy roles can know the ports before touching a host.
  - Refuses an invalid spec (errors, or warnings with O(strict=true)) with the same diagnostics as
    M(divert.fleet.validate), and a host the spec does not have, listing the hosts it has.
  - A spec file is validated once per worker process and file version (path, modification time and
    size), so a task that loops over many hosts of one spec validates it once. Ansible runs each host's
    task in a worker process of its own, so a play over many hosts validates the spec once per host;
    for large fleets, render every host in one task with O(all_hosts=true) (as the C(divert.fleet.site)
    and C(divert.fleet.render) playbooks do) and give each host its slice of RV(hosts).
  - Never changes anything; RV(ignore:changed) is always C(false).
options:
  host:
    description:
      - The spec host to render.
      - Defaults to the C(inventory_hostname) of the host the task runs for, so a play over the
        fleet's inventory renders each host's own rules.
      - Mutually exclusive with O(all_hosts).
    type: str
  all_hosts:
    description:
      - Render every host of the spec in one task and return them as RV(hosts), instead of one
        host's values at the top level.
      - The spec is validated once for the whole fleet; C(divert.fleet.site) runs this on the
        controller and gives each host its own slice.
    type: bool
    default: false
extends_documentation_fragment:
  - divert.fleet._fleet_spec
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  bypass_host_loop:
    support: none
  delegation:
    support: none
    details: Always runs on the controller; with C(delegate_to) the default O(host) is still the inventory host the task runs for.
seealso:
  - module: divert.fleet.validate
  - plugin: divert.fleet.to_pf
    plugin_type: filter
  - plugin: divert.fleet.to_ipfw
    plugin_type: filter
  - name: divert.fleet README
    description: The fleet spec, the rendered rules and where the pf anchor sits.
    link: https://github.com/divert/fleet/blob/main/README.md
"""

EXAMPLES = r"""
- name: Render this host's divert rules on the controller
  divert.fleet.render:
    spec: fleet.yml
  register: fleet_rules

- name: Show which ports the rules divert to
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} diverts to {{ fleet_rules.divert_ports | join(', ') }}"

- name: Render one named host from a spec held in a variable
  divert.fleet.render:
    data: "{{ fleet_spec_data }}"
    host: fw-lab-01
  register: fleet_lab_rules

- name: Render every host of a spec to files on the controller
  delegate_to: localhost
  run_once: true
  block:
    - name: List the hosts of the spec
      divert.fleet.validate:
        spec: fleet.yml
      register: fleet_validation

    - name: Render each host
      divert.fleet.render:
        spec: fleet.yml
        host: "{{ item }}"
      loop: "{{ fleet_validation.hosts }}"
      register: fleet_rendered

    - name: Write each host's rules
      ansible.builtin.copy:
        content: "{{ item.text }}"
        dest: "rendered/{{ item.file_name }}"
        mode: "0644"
      loop: "{{ fleet_rendered.results }}"
      loop_control:
        label: "{{ item.file_name }}"
"""

RETURN = r"""
hosts:
  description:
    - With O(all_hosts=true), every host of the spec by name, each with the values this module
      returns for one host (RV(text), RV(digest), RV(backend), RV(platform), RV(divert_ports),
      RV(groups), RV(host), RV(plan), RV(file_name), RV(spec)).
  returned: success and O(all_hosts=true)
  type: dict
  sample: {"fw-lab-01": {"backend": "ipfw", "digest": "beadeb2f...", "divert_ports": [8010]}}
platform:
  description: The host's platform.
  returned: success and O(all_hosts=false)
  type: str
  sample: opnsense
groups:
  description:
    - The host's load-balancing groups, as port (a string, as mapping keys are) to the number of
      sockets the spec declares on it. What the deploy side waits for before any rule diverts.
  returned: success and O(all_hosts=false)
  type: dict
  sample: {"8010": 15, "8400": 3}
text:
  description:
    - The host's rules text, ending with a newline. For a pf host, the anchor for
      C(pfctl -a ANCHOR -f FILE); for an ipfw host, the rules file for C(ipfw -q FILE).
    - Starts with comments naming the host, its backend and RV(digest).
  returned: success
  type: str
  sample: |
    # divert.fleet pf anchor "divert_fleet" for host fw-edge-01 (backend pf, platform opnsense)
    # spec digest sha256:fa5e830d88a5c1455b67e09c34f5648636bf6720c7a62fa0b7d38ce8d289ef50
    # Rendered text: change the fleet spec and render again rather than editing. Load with: pfctl -a divert_fleet -f FILE
    pass in quick on igb0 inet proto tcp from any to 192.0.2.0/24 port 443 keep state label "divert_fleet:inspect-web" divert-to 8010
    pass in quick on igb0 inet proto { tcp, udp } from any to any port 53 keep state label "divert_fleet:classify-dns" divert-to 8400
digest:
  description: sha256 (hex) of the host's resolved spec; the same spec gives the same digest, and RV(text) names it.
  returned: success
  type: str
  sample: fa5e830d88a5c1455b67e09c34f5648636bf6720c7a62fa0b7d38ce8d289ef50
backend:
  description: The host's firewall backend, V(pf) or V(ipfw).
  returned: success
  type: str
  sample: pf
divert_ports:
  description: The divert ports the host's rules send packets to, sorted; every one must have its whole socket group bound before RV(text) is loaded.
  returned: success
  type: list
  elements: int
  sample: [8010, 8400]
file_name:
  description: The name C(divert-fleet render --out-dir) gives the host's rules, C(NAME.pf.conf) or C(NAME.ipfw.rules).
  returned: success
  type: str
  sample: fw-edge-01.pf.conf
host:
  description:
    - The host's resolved spec (its profile merged in, defaults applied, each rule's divert port resolved).
    - The input of the P(divert.fleet.to_pf#filter) and P(divert.fleet.to_ipfw#filter) filters.
  returned: success
  type: dict
  sample:
    name: fw-edge-01
    backend: pf
    platform: opnsense
    consumers:
      - {name: ips, port: 8010, sockets: 15, lb: true, service: suricata, ready_timeout: 90, reference: false,
         description: Suricata IPS in divert mode,
         rc_vars: {suricata_divert_listeners: "15", suricata_divertport: "8010", suricata_enable: "YES"}}
    groups:
      - {port: 8010, size: 15, consumers: [ips]}
    rules:
      - {name: inspect-web, consumer: ips, port: 8010, interface: igb0, direction: in, family: inet, protocols: [tcp],
         from: [any], to: [192.0.2.0/24], from_ports: [], to_ports: [443], state: keep}
    pf: {anchor: divert_fleet}
    ipfw: {rule_base: 10000, rule_step: 10, set: 5, spare_set: 6}
  contains:
    name:
      description: The host's name in the spec (its inventory hostname).
      type: str
      returned: always
      sample: fw-edge-01
    backend:
      description: V(pf) or V(ipfw).
      type: str
      returned: always
      sample: pf
    platform:
      description: V(opnsense) or V(freebsd).
      type: str
      returned: always
      sample: opnsense
    consumers:
      description: The consumers that run on the host, with per-host overrides applied and C(@PORT@)/C(@SOCKETS@) substituted in C(rc_vars).
      type: list
      elements: dict
      returned: always
    groups:
      description: One load-balancing group per divert port, with its size (the sockets of all its consumers).
      type: list
      elements: dict
      returned: always
    rules:
      description: The host's rules, its profile's first, each with its resolved divert C(port).
      type: list
      elements: dict
      returned: always
    pf:
      description: pf settings; C(anchor) is the anchor the rules load into.
      type: dict
      returned: always
    ipfw:
      description: ipfw settings; C(set), C(spare_set), C(rule_base) and C(rule_step).
      type: dict
      returned: always
plan:
  description: The host's rollout plan, as C(divert-fleet plan --format json) gives it for one host.
  returned: success
  type: dict
  sample:
    host: fw-edge-01
    backend: pf
    platform: opnsense
    digest: fa5e830d88a5c1455b67e09c34f5648636bf6720c7a62fa0b7d38ce8d289ef50
    divert_ports: [8010, 8400]
    steps:
      - {step: 1, action: load-module, module: ipdivert, text: load ipdivert.ko now and at boot (kld_list in rc.conf)}
      - {step: 4, action: wait, consumer: ips, port: 8010, sockets: 15, timeout: 90,
         text: wait until the kernel shows 15 sockets bound on port 8010 (up to 90 s)}
    groups:
      - {port: 8010, size: 15, consumers: [ips], receivers: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
         receiving: 15, stateless_slot: 4,
         note: "every one of the 15 sockets receives stateful flows (jenkins_hash of the state id % 15); stateless packets all reach one socket, slot 4"}
  contains:
    steps:
      description: The ordered rollout steps; each has C(step) (from 1), C(action), C(text) and the fields of its action.
      type: list
      elements: dict
      returned: always
    groups:
      description: Per divert port, the group size, its consumers and the members that will receive flows.
      type: list
      elements: dict
      returned: always
spec:
  description: The spec file that was read, as found; V(null) for O(data).
  returned: success
  type: str
  sample: fleet.yml
errors:
  description: The spec's errors, with the fields described for M(divert.fleet.validate).
  returned: when the spec is invalid
  type: list
  elements: dict
  sample:
    - {code: port-unbound, severity: error, path: /hosts/fw-edge-02/rules/1/port, file: fleet.yml, line: 41, column: 31,
       message: "rule \"nat-out\" diverts to port 9999, which no consumer on host \"fw-edge-02\" binds (bound ports: 8000, 8668)"}
spec_warnings:
  description: The spec's warnings, with the same fields as RV(errors).
  returned: when the spec is invalid
  type: list
  elements: dict
  sample: []
"""
