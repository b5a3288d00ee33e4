# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""divert.fleet.validate: validate a fleet spec on the controller (docs: plugins/modules/validate.py)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleAction
from ansible.plugins.action import ActionBase

from ansible_collections.divert.fleet.plugins.module_utils import _formats
from ansible_collections.divert.fleet.plugins.plugin_utils import _fleet_spec

# The options of this plugin alone: the report written to a file on the controller, in one of the
# formats of `divert-fleet validate --format`.
REPORT_ARGUMENT_SPEC = {
    "format": {"type": "str", "default": "text", "choices": sorted(_formats.FORMATS)},
    "dest": {"type": "path"},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            _validation, args = self.validate_argument_spec(
                argument_spec=dict(_fleet_spec.SPEC_ARGUMENT_SPEC, **REPORT_ARGUMENT_SPEC),
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
        # The report file is written before an invalid spec fails the task: a pipeline wants it most then.
        result.update(self._write_report(report, args))
        if result.get("failed"):
            return result
        if not result["valid"]:
            result.update(failed=True, msg=_fleet_spec.failure_message(report, strict))
        return result

    def _write_report(self, report, args):
        """Write the report to `dest` as `divert-fleet validate --format FORMAT` prints it.

        The text is _formats' own, so the file is byte for byte the command's output for the same
        spec. Written beside the target and renamed, so a reader never sees half a report; left
        alone when it already holds the same text; not written in check mode.
        """
        dest = args["dest"]
        if dest is None:
            if "format" in self._task.args:
                return {"failed": True, "msg": "format names the format of the report written to dest; give dest too"}
            return {}
        content = _formats.FORMATS[args["format"]](report, strict=args["strict"]).encode("utf-8")
        try:
            with open(dest, "rb") as current:
                changed = current.read() != content
        except (IOError, OSError):
            changed = True
        if changed and not self._task.check_mode:
            tmp = os.path.join(os.path.dirname(dest) or ".", ".%s.%d.tmp" % (os.path.basename(dest), os.getpid()))
            try:
                with open(tmp, "wb") as out:
                    out.write(content)
                os.replace(tmp, dest)
            except (IOError, OSError) as exc:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                return {"failed": True, "msg": "cannot write the validation report to %s: %s" % (dest, exc)}
        return {"changed": changed, "dest": dest, "format": args["format"]}
