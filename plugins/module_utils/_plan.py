# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout plan of a host: its ordered steps and its groups. Private to the divert.fleet collection.

The order is the ordering guarantee (design.md, I1 and I4): the divert module
first, then every consumer configured, started and seen bound in full by the
kernel, and only then the rules, checked on the host and loaded in one
transaction. The roles follow the same order; this module states it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.divert.fleet.plugins.module_utils import _host_consumers, _host_drivers, _lb, _render


def _step(action, text, **fields):
    step = {"action": action, "text": text}
    step.update(fields)
    return step


def _configured(consumer, platform):
    """How a consumer's settings are written, in words (the drivers of the on-host library)."""
    if consumer.driver == "opnsense-ids":
        return "OPNsense's IDS model: enabled, mode divert, divert_listeners %s" % consumer.sockets
    variables = " ".join("%s=%s" % item for item in sorted(consumer.rc_vars.items()))
    where = "/etc/rc.conf.d/%s" % consumer.service if platform == "opnsense" else "rc.conf"
    return "%s %s" % (where, variables) if variables else ""


def consumer_policy(consumer):
    """Which change of a running group takes what: the rule of _host_consumers.change_needed, in words."""
    driver = _host_drivers.DRIVERS.get(consumer.driver)
    reload_method = consumer.options.get("reload") or (driver.default_reload if driver else None)
    return _host_consumers.policy(consumer.driver, reload_method, consumer.standby_port, consumer.options.get("watch"))


def host_steps(host):
    at_boot = "/boot/loader.conf.local" if host.platform == "opnsense" else "kld_list in rc.conf"
    steps = [_step("load-module", "load ipdivert.ko now and at boot (%s)" % at_boot, module="ipdivert")]
    for consumer in host.consumers:
        configured = _configured(consumer, host.platform)
        steps.append(_step(
            "configure", "configure %s: driver %s, service %s%s" % (
                consumer.name, consumer.driver, consumer.service, ", %s" % configured if configured else ""),
            consumer=consumer.name, service=consumer.service, driver=consumer.driver,
            standby_port=consumer.standby_port, policy=consumer_policy(consumer)))
        steps.append(_step("start", "start service %s (enabled at boot)" % consumer.service,
                           consumer=consumer.name, service=consumer.service))
        steps.append(_step(
            "wait", "wait until the kernel shows %d socket%s bound on port %d (up to %d s)" % (
                consumer.sockets, "" if consumer.sockets == 1 else "s", consumer.port, consumer.ready_timeout),
            consumer=consumer.name, port=consumer.port, sockets=consumer.sockets, timeout=consumer.ready_timeout))
    if host.backend == "pf":
        steps.append(_step("check", "check the rules' syntax on the host: pfctl -nf FILE"))
        steps.append(_step("load", "load anchor %s in one transaction: pfctl -a %s -f FILE" % (
            host.anchor, host.anchor), anchor=host.anchor))
        steps.append(_step("verify", "verify: pfctl -a %s -s rules matches the rendered rules" % host.anchor))
    else:
        spare, live = host.ipfw["spare_set"], host.ipfw["set"]
        steps.append(_step("check", "check the rules' syntax on the host: ipfw -n"))
        steps.append(_step("load", "load the rules into disabled set %d, then ipfw set swap %d %d and delete the old "
                                   "rules, in one step" % (spare, spare, live), set=live, spare_set=spare))
        steps.append(_step("verify", "verify: ipfw set %d show matches the rendered rules" % live))
    for number, step in enumerate(steps, 1):
        step["step"] = number
    return steps


def host_groups(host):
    """Per port: the group size, the slots that receive packets, and the one slot that takes
    stateless (and, under ipfw, every) packet - all from `_lb`, the kernel model."""
    out = []
    for group in host.groups():
        valid = 1 <= group.size <= _lb.MAX_GROUP
        members = _lb.receivers(host.backend, group.size) if valid else []
        out.append({
            "port": group.port, "size": group.size, "consumers": [c.name for c in group.consumers],
            "receivers": members, "receiving": len(members),
            "stateless_slot": _lb.stateless_slot(group.size) if valid else None,
            "note": _lb.explain(host.backend, group.size) if valid else "",
        })
    return out


def host_plan(host):
    return {
        "host": host.name, "backend": host.backend, "platform": host.platform,
        "digest": host.digest(), "divert_ports": _render.divert_ports(host),
        "steps": host_steps(host), "groups": host_groups(host),
    }


def format_text(plans):
    lines = []
    for plan in plans:
        lines.append("%s (%s on %s, digest %s)" % (plan["host"], plan["backend"], plan["platform"],
                                                   plan["digest"][:12]))
        for step in plan["steps"]:
            lines.append("  %2d. %s" % (step["step"], step["text"]))
        for step in plan["steps"]:
            if step["action"] == "configure":
                lines.append("  change of %s: %s" % (step["consumer"], step["policy"]))
        lines.append("  %-6s %-6s %-24s %-16s %s" % ("port", "group", "consumers", "receiving", "stateless packets"))
        for group in plan["groups"]:
            receiving = "%d of %d" % (group["receiving"], group["size"])
            if group["stateless_slot"] is None:
                stateless = "-"
            elif plan["backend"] == "ipfw":
                stateless = "all reach slot %d" % group["stateless_slot"]
            else:
                stateless = "slot %d" % group["stateless_slot"]
            lines.append("  %-6d %-6d %-24s %-16s %s" % (group["port"], group["size"], ",".join(group["consumers"]),
                                                         receiving, stateless))
        lines.append("")
    return "\n".join(lines)


def rollout_summary(rendered, consumers_result=None, rules_result=None):
    """One host's state after a rollout, for people reading the play's output.

    `rendered` is what divert.fleet.render returns for the host; `consumers_result` is the result
    of divert.fleet.divert_host (consumers and rules as one unit), or of divert.fleet.divert_consumers
    with `rules_result` that of divert.fleet.divert_rules (absent ones count as not run).
    """
    consumers_result = consumers_result or {}
    if rules_result is None and "live_ports" in consumers_result and "rules" in consumers_result:
        rules_result = consumers_result  # one divert_host result holds both
    rules_result = rules_result or {}
    bound = consumers_result.get("sockets") or rules_result.get("sockets") or {}
    live = dict((c["name"], c.get("live_port") or c.get("port")) for c in consumers_result.get("consumers", []))
    ports = []
    for group in rendered["plan"]["groups"]:
        live_ports = sorted(set(live.get(name) or group["port"] for name in group["consumers"]))
        live_port = live_ports[0] if len(live_ports) == 1 else group["port"]
        seen = bound.get(str(live_port), bound.get(live_port)) or {}
        ports.append({
            "port": group["port"], "live_port": live_port, "consumers": group["consumers"],
            "declared": group["size"], "bound": seen.get("bound") if isinstance(seen, dict) else seen,
            "receiving": group["receiving"],
        })
    changed = ["%s (%s)" % (c["name"], c["action"]) if c.get("action") else c["name"]
               for c in consumers_result.get("consumers", []) if c.get("changed")]
    rules_loaded = len(rules_result.get("rules") or [])
    text = ["%s, digest %s: %d rule%s loaded%s" % (
        rendered["backend"], rendered["digest"][:12], rules_loaded, "" if rules_loaded == 1 else "s",
        " (changed)" if rules_result.get("changed") else "")]
    for port in ports:
        text.append("port %d%s (%s): %s of %d sockets bound, %d receive flows" % (
            port["port"], "" if port["live_port"] == port["port"] else ", serving on %d" % port["live_port"],
            ", ".join(port["consumers"]), "?" if port["bound"] is None else port["bound"],
            port["declared"], port["receiving"]))
    if changed:
        text.append("consumers changed: %s" % ", ".join(changed))
    return {
        "text": text,
        "backend": rendered["backend"], "digest": rendered["digest"][:12], "ports": ports,
        "rules_loaded": rules_loaded,
        "consumers_changed": changed, "rules_changed": bool(rules_result.get("changed")),
        "failed": bool(consumers_result.get("failed") or rules_result.get("failed")),
    }
