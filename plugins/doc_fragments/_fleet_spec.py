# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of the plugins that read a fleet spec. Private to the divert.fleet collection."""

from __future__ import annotations


class ModuleDocFragment:
    # The options and common attributes of divert.fleet.validate and divert.fleet.render; their
    # argument spec is plugins/plugin_utils/_fleet_spec.py (SPEC_ARGUMENT_SPEC).
    DOCUMENTATION = r"""
options:
  spec:
    description:
      - Path of the fleet spec file (YAML or JSON), read on the controller.
      - A relative path is looked for where Ansible looks for a C(src) file (the role's C(files/)
        directory, the role, the playbook directory's C(files/), the playbook directory) and then
        in the current working directory of C(ansible-playbook).
      - Diagnostics name the file as found, so their C(file) is the path given here when it was
        found relative to the current directory.
      - Exactly one of O(spec) and O(data) is required.
    type: path
  data:
    description:
      - The fleet spec itself, as a mapping; for example a variable read with
        M(ansible.builtin.include_vars), or a file's text passed through the
        P(ansible.builtin.from_yaml#filter) filter.
      - Diagnostics of data have no line or column; their C(file) is C(<data>) and their C(path)
        (a JSON Pointer) says where the problem is.
      - Ansible templates a task's arguments before the plugin sees them, so a Jinja expression inside a
        spec given as data (from extra vars, say) is evaluated on the controller first; the plugin warns
        where it can tell that a value held one. Give the spec as a file with O(spec) to have it read as
        written.
      - Exactly one of O(spec) and O(data) is required.
    type: dict
  strict:
    description:
      - Count the spec's warnings (for example C(pf-inet6) or C(unused-consumer)) as errors,
        as C(divert-fleet validate --strict) does.
    type: bool
    default: false
notes:
  - Validation is the same as C(divert-fleet validate) runs; the validation codes are listed in
    the collection's README.
requirements:
  - PyYAML and jsonschema on the controller (see the collection's C(requirements.txt)).
attributes:
  action:
    support: full
  async:
    support: none
  become:
    support: none
  check_mode:
    support: full
    details: Reads the spec only, so it runs unchanged in check mode.
  connection:
    support: none
    details: Runs on the controller and never connects to the host.
  diff_mode:
    support: none
  idempotent:
    description: Running the task twice gives the same result and changes nothing.
    support: full
  platform:
    platforms: all
"""
