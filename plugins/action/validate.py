# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""divert.fleet.validate: validate a fleet spec on the controller (docs: plugins/modules/validate.py)."""

from __future__ import annotations

from ansible.errors import AnsibleAction
from ansible.plugins.action import ActionBase

from ansible_collections.divert.fleet.plugins.plugin_utils import _fleet_spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            _validation, args = self.validate_argument_spec(
                argument_spec=_fleet_spec.SPEC_ARGUMENT_SPEC,
                mutually_exclusive=_fleet_spec.SPEC_MUTUALLY_EXCLUSIVE,
                required_one_of=_fleet_spec.SPEC_REQUIRED_ONE_OF,
            )
            report, path = _fleet_spec.load_report(self, args)
        except AnsibleAction as exc:
            result.update(exc.result)
            return result

        strict = args["strict"]
        result.update(_fleet_spec.diagnostics_result(report))
        _fleet_spec.warn_if_templated(self, args, task_vars, result)
        result.update(
            changed=False,
            valid=report.valid(strict),
            summary=report.summary(),
            hosts=list(report.fleet.hosts) if report.fleet else [],
            spec=path,
        )
        if not result["valid"]:
            result.update(failed=True, msg=_fleet_spec.failure_message(report, strict))
        return result
