# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""divert.fleet.render: one host's rules text from a fleet spec, on the controller (docs: plugins/modules/render.py)."""

from __future__ import annotations

from ansible.errors import AnsibleAction, AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.divert.fleet.plugins.module_utils import _plan, _render
from ansible_collections.divert.fleet.plugins.plugin_utils import _fleet_spec

# How many of the spec's host names a "host not in the spec" message lists.
LISTED_HOSTS = 20

RENDER_ARGUMENT_SPEC = dict(_fleet_spec.SPEC_ARGUMENT_SPEC, host={"type": "str"},
                            all_hosts={"type": "bool", "default": False})


def host_result(host, path):
    """What the deploy side needs of one resolved host."""
    return {
        "text": _render.render(host),
        "digest": host.digest(),
        "backend": host.backend,
        "platform": host.platform,
        "divert_ports": _render.divert_ports(host),
        "groups": dict((str(group.port), group.size) for group in host.groups()),
        "host": host.as_dict(),
        "plan": _plan.host_plan(host),
        "file_name": _render.file_name(host),
        "spec": path,
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        try:
            _validation, args = self.validate_argument_spec(
                argument_spec=RENDER_ARGUMENT_SPEC,
                mutually_exclusive=_fleet_spec.SPEC_MUTUALLY_EXCLUSIVE + [("host", "all_hosts")],
                required_one_of=_fleet_spec.SPEC_REQUIRED_ONE_OF,
            )
            name = args["host"] or task_vars.get("inventory_hostname")
            if not name and not args["all_hosts"]:
                raise AnsibleActionFail("no host to render: set `host`")
            report, path = _fleet_spec.load_report(self, args)
        except AnsibleAction as exc:
            result.update(exc.result)
            return result

        result["changed"] = False
        if not report.valid(args["strict"]):
            # The rules of an invalid spec are not rendered: a wrong rule is worse than none.
            result.update(_fleet_spec.diagnostics_result(report))
            result.update(failed=True, msg=_fleet_spec.failure_message(report, args["strict"]))
            return result

        if args["all_hosts"]:
            # One validation for the whole fleet: each host's play takes its own slice of this.
            result["hosts"] = dict((host.name, host_result(host, path)) for host in report.fleet.hosts.values())
            return result

        host = report.fleet.host(name)
        if host is None:
            names = list(report.fleet.hosts)
            listed = ", ".join(names[:LISTED_HOSTS]) + (
                " and %d more" % (len(names) - LISTED_HOSTS) if len(names) > LISTED_HOSTS else "")
            result.update(failed=True, msg="host %s is not in fleet spec %s; its hosts are: %s" % (
                name, report.file, listed or "(none)"))
            return result

        result.update(host_result(host, path))
        return result
