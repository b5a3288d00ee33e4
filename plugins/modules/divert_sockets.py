#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: divert_sockets
short_description: Read the divert sockets bound in the kernel, and wait for divert groups to be whole
version_added: 0.1.0
description:
  - Reads the divert sockets bound on a FreeBSD or OPNsense host, as the kernel reports them, and
    returns them per divert port with the processes holding them.
  - It runs C(sockstat -4 -P divert --libxo json) (FreeBSD 15 and later). When C(sockstat) has no
    libxo output it parses the plain C(sockstat -4 -P divert) table (columns USER COMMAND PID FD
    PROTO LOCAL-ADDRESS FOREIGN-ADDRESS, protocol C(div4), local address C(*:PORT)), and as a last
    resort the raw C(sysctl -x net.inet.divert.pcblist) buffer (one C(struct xinpcb) per bound
    socket, local port read from C(inp_inc); no process information).
  - Counts are rows as C(sockstat) prints them, one per socket and owning file descriptor.
  - With O(wait_for), polls (every 0.1 s, backing off to 1 s) until every given port has exactly
    the given number of bound sockets, and fails after O(timeout) seconds naming the host, the
    port, the expected and the bound counts. This is the kernel's word that a consumer has bound
    its whole group, which the bind-before-divert ordering (invariant I1) waits for.
author:
  - divert.fleet contributors (@divert)
options:
  wait_for:
    description:
      - Mapping of divert port to the exact number of sockets that must be bound on it.
      - When omitted the module only reads.
    type: dict
  timeout:
    description:
      - Seconds to wait for O(wait_for) before failing.
    type: int
    default: 60
extends_documentation_fragment:
  - divert.fleet._onhost
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads. In check mode it does not wait; it reports the groups that are
      not whole in RV(incomplete) instead of failing, since in check mode consumers were not started.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Needs root to see every process's sockets.
seealso:
  - module: divert.fleet.divert_rules
  - module: divert.fleet.divert_consumers
  - name: sockstat(1)
    description: The FreeBSD tool whose output is parsed.
    link: https://man.freebsd.org/cgi/man.cgi?query=sockstat&sektion=1
"""

EXAMPLES = r"""
- name: Read the bound divert sockets
  divert.fleet.divert_sockets:
  register: divert

- name: Wait until Suricata has bound 31 sockets on port 8000 and appidd 3 on 8100
  divert.fleet.divert_sockets:
    wait_for:
      8000: 31
      8100: 3
    timeout: 120
"""

RETURN = r"""
sockets:
  description: Bound divert sockets per port (keys are port numbers as strings).
  returned: always
  type: dict
  sample:
    "8000":
      port: 8000
      bound: 3
      pids: [4211]
      commands: [divert-reflector]
source:
  description: What was parsed, C(sockstat-json), C(sockstat) or C(pcblist).
  returned: always
  type: str
  sample: sockstat-json
polls:
  description: How many times the sockets were read while waiting.
  returned: always
  type: int
  sample: 3
incomplete:
  description: The ports of O(wait_for) that do not have exactly the expected sockets (empty when all are whole).
  returned: always
  type: list
  elements: dict
  sample: [{port: 8000, expected: 31, bound: 30}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.divert.fleet.plugins.module_utils._host_os import FreeBSDHost, HostError
from ansible_collections.divert.fleet.plugins.module_utils._host_sockets import (
    _json_table, attribute, incomplete_groups, read_divert_sockets, wait_for_groups)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            wait_for=dict(type="dict"),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    try:
        expected = dict((int(port), int(count)) for port, count in (module.params["wait_for"] or {}).items())
    except (TypeError, ValueError):
        module.fail_json(msg="wait_for must map port numbers to socket counts, got %r" % module.params["wait_for"])
    host = FreeBSDHost()
    try:
        if expected and not module.check_mode:
            table, source, polls = wait_for_groups(host, expected, module.params["timeout"])
        else:
            table, source = read_divert_sockets(host)
            polls = 1
        if source == "pcblist":
            table = attribute(host, table)  # which processes hold them: sockstat's rows
    except HostError as exc:
        module.fail_json(msg=exc.message, commands=host.commands, **exc.details)
    missing = [{"port": p, "expected": e, "bound": b} for p, e, b in incomplete_groups(table, expected)]
    module.exit_json(changed=False, sockets=_json_table(table), source=source, polls=polls, incomplete=missing)


if __name__ == "__main__":
    main()
