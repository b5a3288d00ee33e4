# -*- coding: utf-8 -*-
# Copyright: divert.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `divert-fleet` command: validate, render, plan. Private to the divert.fleet collection.

It imports nothing from Ansible, so it starts fast in CI pipelines.
Exit codes: 0 valid (or done), 1 invalid spec, 2 usage error or unreadable file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import gc
import json
import os
import sys

from ansible_collections.divert.fleet.plugins.module_utils import _formats, _loader, _render
from ansible_collections.divert.fleet.plugins.module_utils._loader import SpecFileError
from ansible_collections.divert.fleet.plugins.module_utils._validate import validate_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot be run; main() prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError("%s\n%s: error: %s\n" % (self.format_usage().rstrip("\n"), self.prog, message))


def _limit_options(parser):
    """The bounds a spec is read within: generous defaults, each named in the message when exceeded."""
    group = parser.add_argument_group("limits")
    group.add_argument("--max-mib", type=float, default=_loader.MAX_MIB, metavar="MIB",
                       help="largest spec file read, in MiB (default %(default)s)")
    group.add_argument("--max-values", type=int, default=_loader.MAX_VALUES, metavar="N",
                       help="most values (commas, colons and lines) a spec may hold (default %(default)s)")
    group.add_argument("--max-yaml-values", type=int, default=_loader.MAX_YAML_VALUES, metavar="N",
                       help="most values of a spec outside the plain YAML subset, which is read as full YAML at "
                            "about a kilobyte a value (default %(default)s)")
    group.add_argument("--max-depth", type=int, default=_loader.MAX_DEPTH, metavar="N",
                       help="deepest nesting read (default %(default)s)")
    group.add_argument("--max-aliases", type=int, default=_loader.MAX_ALIAS_EXPANSION, metavar="N",
                       help="most nodes YAML aliases and merge keys may add (default %(default)s)")


def _limits(args):
    for name, option in _loader.Limits.OPTIONS:
        value = getattr(args, name)
        if name == "max_mib" and value <= 0:
            raise UsageError("divert-fleet: %s must be more than 0, not %s\n" % (option, value))
        if name != "max_mib" and value < 1:
            raise UsageError("divert-fleet: %s must be at least 1, not %s\n" % (option, value))
    return _loader.Limits(**dict((name, getattr(args, name)) for name, _option in _loader.Limits.OPTIONS))


def _parser():
    parser = _Parser(prog="divert-fleet", description=(
        "Validate a divert.fleet fleet spec, render each host's pf or ipfw divert rules, and show the rollout "
        "plan. Exit 0: valid; 1: invalid spec; 2: usage error or unreadable file."))
    parser.add_argument("--version", action="version", version="divert-fleet %s" % _formats.TOOL_VERSION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    validate = commands.add_parser("validate", help="check a fleet spec: schema and cross-field rules")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--format", choices=sorted(_formats.FORMATS), default="text",
                          help="text (file:line:col: severity code: message), json, sarif (2.1.0) or junit")
    validate.add_argument("--strict", action="store_true", help="count warnings as errors")
    _limit_options(validate)

    render = commands.add_parser("render", help="print a host's pf anchor or ipfw rules file")
    render.add_argument("file", metavar="FILE")
    target = render.add_mutually_exclusive_group(required=True)
    target.add_argument("--host", metavar="NAME", help="the host whose rules to print")
    target.add_argument("--out-dir", metavar="DIR", help="write every host to DIR/NAME.pf.conf or DIR/NAME.ipfw.rules")
    _limit_options(render)

    plan = commands.add_parser("plan", help="print each host's ordered rollout steps and its groups")
    plan.add_argument("file", metavar="FILE")
    plan.add_argument("--host", metavar="NAME", help="only this host")
    plan.add_argument("--format", choices=["text", "json"], default="text")
    _limit_options(plan)
    return parser


def _load(path, limits=None):
    """Report for a spec, or None after telling why it cannot be read."""
    try:
        return validate_file(path, limits)
    except SpecFileError as exc:
        sys.stderr.write("divert-fleet: %s\n" % exc)
        return None


def _valid_fleet(path, limits=None):
    """(fleet, exit code): the fleet of a valid spec, or an exit code after printing why not."""
    report = _load(path, limits)
    if report is None:
        return None, EXIT_USAGE
    if report.errors:
        sys.stderr.write(_formats.text(report))
        return None, EXIT_INVALID
    return report.fleet, EXIT_OK


def _host(fleet, name):
    host = fleet.host(name)
    if host is None:
        sys.stderr.write("divert-fleet: no host %s in the spec; hosts: %s\n" % (
            json.dumps(name), ", ".join(sorted(fleet.hosts)) or "none"))
    return host


def _write_atomic(path, content):
    """Write beside the target, then rename: a reader never sees half a rules file. (os.open and os.write:
    render --out-dir writes a file per host, and a file object costs more than the write.)"""
    tmp = os.path.join(os.path.dirname(path) or ".", ".%s.tmp" % os.path.basename(path))
    try:
        data = content.encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_validate(args):
    report = _load(args.file, _limits(args))
    if report is None:
        return EXIT_USAGE
    sys.stdout.write(_formats.FORMATS[args.format](report, strict=args.strict))
    return EXIT_OK if report.valid(args.strict) else EXIT_INVALID


def cmd_render(args):
    fleet, code = _valid_fleet(args.file, _limits(args))
    if fleet is None:
        return code
    if args.host is not None:
        host = _host(fleet, args.host)
        if host is None:
            return EXIT_USAGE
        sys.stdout.write(_render.render(host))
        return EXIT_OK
    try:
        if not os.path.isdir(args.out_dir):
            os.makedirs(args.out_dir)
        for host in fleet.hosts.values():
            _write_atomic(os.path.join(args.out_dir, _render.file_name(host)), _render.render(host))
    except (IOError, OSError) as exc:
        sys.stderr.write("divert-fleet: cannot write to %s: %s\n" % (args.out_dir, exc))
        return EXIT_USAGE
    sys.stdout.write("wrote %d host rule files to %s\n" % (len(fleet.hosts), args.out_dir))
    return EXIT_OK


def cmd_plan(args):
    from ansible_collections.divert.fleet.plugins.module_utils import _plan  # only the plan needs the host side
    fleet, code = _valid_fleet(args.file, _limits(args))
    if fleet is None:
        return code
    hosts = list(fleet.hosts.values())
    if args.host is not None:
        host = _host(fleet, args.host)
        if host is None:
            return EXIT_USAGE
        hosts = [host]
    plans = [_plan.host_plan(host) for host in hosts]
    if args.format == "json":
        sys.stdout.write(json.dumps({"hosts": plans}, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(_plan.format_text(plans))
    return EXIT_OK


def main(argv=None):
    """Run the command; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(str(exc))
        return EXIT_USAGE
    handler = {"validate": cmd_validate, "render": cmd_render, "plan": cmd_plan}[args.command]
    # The cyclic collector paused for the whole command, not only the validation (see _validate._without_gc):
    # writing a file per host of a large fleet would otherwise have it walk the fleet's objects again and again.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return handler(args)
    except UsageError as exc:
        sys.stderr.write(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # `divert-fleet render ... | head`: the reader has what it wanted
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    finally:
        if was_enabled:
            gc.enable()
