# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: divert.fleet.validate is an action plugin (plugins/action/validate.py) that
# runs on the controller; there is no module to run on a host.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate
short_description: Validate a divert.fleet fleet spec on the controller
version_added: 0.1.0
author: divert.fleet maintainers (@divert)
description:
  - Checks a fleet spec against the fleet spec JSON Schema (C(schemas/fleet.schema.json)) and every
    cross-field rule of the collection, and reports every problem at once, each as a diagnostic with a
    stable code, a message, a JSON Pointer and the line and column in the YAML file.
  - The same validation as C(divert-fleet validate); runs on the controller, with no connection to the
    host and no inventory needed (see the C(divert.fleet.validate) playbook).
  - >-
    Fails when the spec has errors, or warnings with O(strict=true). The task message quotes the first
    diagnostics as C(file:line:col: severity code: message); RV(errors) and RV(spec_warnings) hold all of them.
  - With O(dest), also writes the report to a file on the controller as text, JSON, SARIF or JUnit
    XML (O(format)), byte for byte what C(divert-fleet validate FILE --format FORMAT) prints for the
    same spec, so a pipeline gets the code-scanning or test report without a clone of the collection.
    The file is written before an invalid spec fails the task.
  - Changes nothing else; RV(ignore:changed) is C(true) only when the report file was created or
    its content changed.
options:
  format:
    description:
      - The format of the report written to O(dest), as C(divert-fleet validate --format).
      - >-
        V(text) is one C(file:line:col: severity code: message) line per diagnostic and a summary
        line; V(json) is one object C({"valid", "errors", "warnings", "summary"}); V(sarif) is SARIF
        2.1.0 with one reporting rule per validation code, for code-scanning UIs; V(junit) is JUnit
        XML with one test case per validation code, for CI test reports.
      - Giving O(format) without O(dest) is an error.
    type: str
    choices: [json, junit, sarif, text]
    default: text
  dest:
    description:
      - Write the report to this file on the controller, in the O(format) given. A relative path is
        taken from the current working directory of C(ansible-playbook); the directory must exist.
      - The file is replaced in one step (written beside it, then renamed), and left alone when it
        already holds the same report.
      - Not written in check mode; RV(ignore:changed) then says whether it would be.
    type: path
extends_documentation_fragment:
  - divert.fleet._fleet_spec
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: Validates as in a normal run; the report file of O(dest) is not written.
  bypass_host_loop:
    support: none
    details: Runs once per host like any task; use C(run_once) to validate a spec once per play.
  delegation:
    support: none
    details: Always runs on the controller; C(delegate_to) makes no difference.
seealso:
  - module: divert.fleet.render
  - plugin: divert.fleet.to_pf
    plugin_type: filter
  - name: divert.fleet README
    description: The fleet spec, the validation codes and the C(divert-fleet) command.
    link: https://github.com/divert/fleet/blob/main/README.md
"""

EXAMPLES = r"""
- name: Validate the fleet spec before anything touches a firewall
  divert.fleet.validate:
    spec: fleet.yml
  run_once: true

- name: Validate in CI, counting warnings as errors
  divert.fleet.validate:
    spec: "{{ playbook_dir }}/../fleet.yml"
    strict: true

- name: Validate a spec held in a variable
  divert.fleet.validate:
    data: "{{ fleet_spec_data }}"
  register: fleet_validation

- name: List the spec's errors by code, without failing the play
  divert.fleet.validate:
    spec: fleet.yml
  register: fleet_validation
  ignore_errors: true

- name: Show the codes of the errors
  ansible.builtin.debug:
    msg: "{{ fleet_validation.errors | map(attribute='code') | list }}"

- name: Write a SARIF report for code scanning, failing afterwards when the spec is invalid
  divert.fleet.validate:
    spec: fleet.yml
    format: sarif
    dest: fleet.sarif

- name: Write a JUnit report for the CI's test view
  divert.fleet.validate:
    spec: fleet.yml
    format: junit
    dest: "{{ lookup('ansible.builtin.env', 'CI_PROJECT_DIR') }}/fleet-junit.xml"
"""

RETURN = r"""
valid:
  description: Whether the spec passed (no errors, and no warnings with O(strict=true)).
  returned: success or when the spec is invalid
  type: bool
  sample: true
errors:
  description: The spec's errors, sorted by position in the file.
  returned: success or when the spec is invalid
  type: list
  elements: dict
  sample:
    - code: unknown-profile
      severity: error
      message: 'host "fw-edge-01" takes profile "edgy", which is not defined; defined profiles: "edge" (did you mean "edge"?)'
      path: /hosts/fw-edge-01/profile
      file: examples/broken.yml
      line: 35
      column: 14
  contains:
    code:
      description: The stable validation code, for example C(schema), C(port-unbound) or C(socket-limit).
      type: str
      returned: always
      sample: unknown-profile
    severity:
      description: V(error) or V(warning).
      type: str
      returned: always
      sample: error
    message:
      description: What is wrong and what would be right, with the numbers.
      type: str
      returned: always
      sample: host "fw-edge-01" takes profile "edgy", which is not defined
    path:
      description: JSON Pointer (RFC 6901) to the offending value in the spec; empty for the whole document.
      type: str
      returned: always
      sample: /hosts/fw-edge-01/profile
    file:
      description: The spec file as found, or C(<data>) for O(data).
      type: str
      returned: always
      sample: examples/broken.yml
    line:
      description: 1-based line of the offending node; V(null) for O(data).
      type: int
      returned: always
      sample: 35
    column:
      description: 1-based column of the offending node; V(null) for O(data).
      type: int
      returned: always
      sample: 14
spec_warnings:
  description:
    - The spec's warnings, sorted by position in the file, with the same fields as RV(errors).
    - They are also in RV(warnings) as text.
  returned: success or when the spec is invalid
  type: list
  elements: dict
  sample:
    - code: unused-consumer
      severity: warning
      message: consumer "natd" runs on host "fw-edge-02" but no rule of that host diverts to it (port 8668); add a rule or remove it from the host
      path: /hosts/fw-edge-02/consumers/0
      file: examples/broken.yml
      line: 38
      column: 17
warnings:
  description:
    - "The spec's warnings as C(file:line:col: warning code: message), one string each."
    - Ansible reserves a result's C(warnings) key, shows each item as a C([WARNING]) and keeps it only as
      text; the diagnostics as data are in RV(spec_warnings).
  returned: when the spec has warnings
  type: list
  elements: str
  sample:
    - >-
      examples/broken.yml:38:17: warning unused-consumer: consumer "natd" runs on host "fw-edge-02"
      but no rule of that host diverts to it (port 8668); add a rule or remove it from the host
summary:
  description: Counts of the spec's resolved hosts, consumer definitions and host rules.
  returned: success or when the spec is invalid
  type: dict
  sample: {"hosts": 3, "consumers": 2, "rules": 7}
  contains:
    hosts:
      description: Number of hosts.
      type: int
      returned: always
      sample: 3
    consumers:
      description: Number of consumer definitions.
      type: int
      returned: always
      sample: 2
    rules:
      description: Number of rules of all hosts, each profile rule counted once per host that takes it.
      type: int
      returned: always
      sample: 7
hosts:
  description:
    - The names of the spec's hosts, in spec order; empty when the file could not be read as a mapping.
    - Loop over them with M(divert.fleet.render) and its O(divert.fleet.render#module:host) option to
      render every host, as the C(divert.fleet.render) playbook does.
  returned: success or when the spec is invalid
  type: list
  elements: str
  sample: [fw-edge-01, fw-edge-02, fw-lab-01]
spec:
  description: The spec file that was validated, as found; V(null) for O(data).
  returned: success or when the spec is invalid
  type: str
  sample: examples/fleet.yml
dest:
  description: The report file of O(dest), as given.
  returned: when O(dest) is given and the spec could be read
  type: str
  sample: fleet.sarif
format:
  description: The format the report file of O(dest) is in.
  returned: when O(dest) is given and the spec could be read
  type: str
  sample: sarif
"""
