# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs the on-host modules share (documented in the _consumers and _onhost doc fragments).

Private to the divert.fleet collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.module_utils._host_consumers import DEFAULT_DRAIN_TIMEOUT
from ansible_collections.divert.fleet.plugins.module_utils._host_os import DEFAULT_LOCK_TIMEOUT

CONSUMER_OPTIONS = dict(
    name=dict(type="str", required=True),
    port=dict(type="int", required=True),
    standby_port=dict(type="int"),
    sockets=dict(type="int", required=True),
    lb=dict(type="bool", default=True),
    driver=dict(type="str", choices=["rc", "reflector", "suricata", "opnsense-ids"]),
    service=dict(type="str", required=True),
    rc_vars=dict(type="dict", default={}),
    rc_vars_template=dict(type="dict"),
    reload=dict(type="str", choices=["rc", "configctl", "SIGHUP", "SIGUSR1", "SIGUSR2"]),
    watch=dict(type="dict"),
    ready_timeout=dict(type="int", default=60),
    drain_timeout=dict(type="int", default=DEFAULT_DRAIN_TIMEOUT),
    reference=dict(type="bool", default=False),
    description=dict(type="str"),
)

CONSUMERS_ARGS = dict(
    consumers=dict(type="list", elements="dict", required=True, options=CONSUMER_OPTIONS),
    reference_program=dict(type="str"),
    allow_disruption=dict(type="bool", default=False),
)

CHANGE_ARGS = dict(
    platform=dict(type="str", choices=["freebsd", "opnsense"]),
    lock_timeout=dict(type="int", default=DEFAULT_LOCK_TIMEOUT),
)

PLACEMENT_ARGS = dict(
    placement=dict(type="str", choices=["head", "tail"]),
    priority=dict(type="int", default=0),
)

FIREWALL_ARGS = dict(
    anchor=dict(type="str", default="divert_fleet"),
    set=dict(type="int", default=5),
    spare_set=dict(type="int", default=6),
)
