# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""divert.fleet.to_pf and divert.fleet.to_ipfw: a resolved host's rules text; divert.fleet.rollout_summary and
divert.fleet.rollout_summaries: what a rollout left (docs: the .yml file of each)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.divert.fleet.plugins.module_utils import _model, _plan, _render


def _host(resolved, filter_name, backend):
    try:
        host = _model.host_from_dict(resolved)
    except ValueError as exc:
        raise AnsibleFilterError("divert.fleet.%s: %s" % (filter_name, exc))
    if host.backend != backend:
        other = "to_ipfw" if backend == "pf" else "to_pf"
        raise AnsibleFilterError(
            "divert.fleet.%s: host %s uses backend %s, not %s; use divert.fleet.%s, or the `text` that "
            "divert.fleet.render returns for any backend" % (filter_name, host.name, host.backend, backend, other))
    return host


def to_pf(resolved):
    """The pf anchor text of a resolved pf host."""
    return _render.render_pf(_host(resolved, "to_pf", "pf"))


def to_ipfw(resolved):
    """The ipfw rules file of a resolved ipfw host."""
    return _render.render_ipfw(_host(resolved, "to_ipfw", "ipfw"))


def rollout_summary(rendered, consumers_result=None, rules_result=None):
    """One host's summary after a rollout: ports, declared and bound sockets, receivers, rules loaded."""
    try:
        return _plan.rollout_summary(rendered, consumers_result, rules_result)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("divert.fleet.rollout_summary: expected what divert.fleet.render returns for a "
                                 "host, then the results of divert_consumers and divert_rules: %s" % exc)


def rollout_summaries(rendered_hosts, hostvars, hosts, result_var="host_result"):
    """The summary lines of every host in `hosts` that the spec names, one task for a whole batch."""
    summaries = {}
    try:
        for name in sorted(hosts):
            if name not in rendered_hosts:
                continue
            result = hostvars[name].get(result_var) if name in hostvars else None
            summaries[name] = _plan.rollout_summary(rendered_hosts[name], result or {})["text"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("divert.fleet.rollout_summaries: expected the hosts that divert.fleet.render returns "
                                 "with all_hosts=true, then hostvars and a list of host names: %s" % exc)
    return summaries


class FilterModule:
    def filters(self):
        return {"to_pf": to_pf, "to_ipfw": to_ipfw, "rollout_summary": rollout_summary,
                "rollout_summaries": rollout_summaries}
