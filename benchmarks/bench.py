#!/usr/bin/env python3
"""divert.fleet benchmarks: ratios against a named peer measured in the same run.

1. validate: `divert-fleet validate` (schema + every cross-field rule + positions)
   against `check-jsonschema --schemafile schemas/fleet.schema.json` (schema only)
   on the same generated 1,000-host fleet, whole processes, alternating.
2. scale: `divert-fleet validate` on 1,000 to 50,000 hosts: seconds (whole process),
   peak memory (ru_maxrss of the child, less that of a child that only imports the
   command), and both per host.
3. render: `divert-fleet render --out-dir` for all hosts at two sizes, against
   aerleon's pf generator (`aclgen`, target packetfilter) at two sizes: the marginal
   cost of a rule is the slope between the two. aerleon is installed by pip in a
   venv of its own, benchmarks/.venv-peer (never in the project's requirements).
4. rollout: on ten twin hosts, a second (no-change) `divert.fleet.site` run against a
   play of one `ansible.builtin.ping` per host, same inventory, alternating; the
   ratio, and module executions per host counted at the hosts' interpreters.

Run with `make bench`. Prints figures; asserts nothing.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SCHEMA = os.path.join(ROOT, "schemas", "fleet.schema.json")

CONSUMERS = [("ids", 8010, 15), ("appid", 8400, 3), ("dpi", 8500, 7), ("natmon", 8600, 1),
             ("tls", 8700, 5), ("dns", 8800, 1), ("voip", 8900, 3), ("geo", 9000, 9)]
INTERFACES = ["igb0", "igb1", "ix0", "vtnet0", "em0"]


def generate(path, hosts=1000, seed=7):
    """Write fleet_text(hosts, seed) to path."""
    with open(path, "w") as handle:
        handle.write(fleet_text(hosts, seed))


def fleet_text(hosts=1000, seed=7):
    """A valid fleet: several profiles, eight consumers, a few rules a host."""
    rng = random.Random(seed)
    out = ["version: 1", "consumers:"]
    for name, port, sockets in CONSUMERS:
        out += ["  %s:" % name, "    description: %s consumer" % name, "    port: %d" % port,
                "    sockets: %d" % sockets, "    service: %s" % name, "    rc_vars:",
                '      %s_flags: "-p @PORT@ -n @SOCKETS@"' % name, "    ready_timeout: 60"]
    out.append("profiles:")
    profiles = []
    for index in range(6):
        backend = "pf" if index < 4 else "ipfw"
        platform = "opnsense" if index < 2 else "freebsd"
        chosen = rng.sample([c[0] for c in CONSUMERS], 3)
        name = "p%d" % index
        profiles.append((name, backend, chosen))
        out += ["  %s:" % name, "    backend: %s" % backend, "    platform: %s" % platform,
                "    consumers: [%s]" % ", ".join(chosen), "    rules:"]
        for rule_index, consumer in enumerate(chosen):
            out += ["      - name: r%d-%s" % (rule_index, consumer), "        consumer: %s" % consumer,
                    "        interface: %s" % rng.choice(INTERFACES), "        protocol: tcp",
                    "        to: [10.%d.0.0/16, 192.168.%d.0/24]" % (rng.randrange(256), rng.randrange(256)),
                    "        to_ports: [80, 443, \"8000:8100\"]"]
    out.append("hosts:")
    for index in range(hosts):
        name, backend, chosen = profiles[index % len(profiles)]
        out += ["  fw-%04d.example.net:" % index, "    profile: %s" % name]
        if backend == "ipfw":  # ipfw reaches only a group's first socket: one each
            out.append("    consumers: [%s]" % ", ".join("{name: %s, sockets: 1}" % c for c in chosen))
        elif index % 3 == 0:
            out.append("    consumers: [{name: %s, sockets: %d}]" % (chosen[0], rng.choice([1, 3, 5, 7, 9, 11])))
        if index % 2 == 0:
            out += ["    rules:", "      - name: own-%d" % index, "        consumer: %s" % chosen[1],
                    "        protocol: [tcp, udp]", "        from: 172.%d.0.0/16" % (16 + index % 16),
                    "        to_ports: [53]"]
        if backend == "ipfw":
            out.append("    ipfw: {set: 5, spare_set: 6, rule_base: 10000, rule_step: 10}")
    return "\n".join(out) + "\n"


# The rollout benchmark's fleet, in the example fleet's shapes: OPNsense edges running OPNsense's own IDS and the
# reference classifier on pf, FreeBSD branches running Suricata from ports (one listener, a standby port) on pf,
# FreeBSD lab hosts on ipfw.
ROLLOUT_FLEET = """\
version: 1
consumers:
  ids: {driver: opnsense-ids, port: 8000, sockets: 15, service: suricata, ready_timeout: 90}
  ips: {driver: suricata, port: 8010, standby_port: 8011, sockets: 1, service: suricata, ready_timeout: 90}
  classifier: {port: 8400, sockets: 3, service: classifier, reference: true}
profiles:
  edge:
    backend: pf
    platform: opnsense
    consumers: [ids, classifier]
    rules:
      - {name: inspect-web, consumer: ids, interface: igb0, protocol: tcp, to_ports: [80, 443]}
      - {name: classify-dns, consumer: classifier, interface: igb0, protocol: [tcp, udp], to_ports: [53]}
  branch:
    backend: pf
    platform: freebsd
    consumers: [ips, classifier]
    rules:
      - {name: inspect-branch-web, consumer: ips, interface: vtnet0, protocol: tcp, to_ports: [80, 443]}
      - {name: classify-branch-dns, consumer: classifier, interface: vtnet0, protocol: udp, to_ports: [53]}
  lab:
    backend: ipfw
    platform: freebsd
    consumers: [ips]
    rules:
      - {name: inspect-lab, consumer: ips, interface: vtnet1, protocol: tcp, from: 10.20.0.0/16}
hosts:
%s"""


def rollout_fleet(hosts):
    return ROLLOUT_FLEET % "".join("  fw-%02d: {profile: %s}\n" % (i, ("edge", "branch", "lab")[i % 3])
                                   for i in range(1, hosts + 1))


def bench_rollout(rounds, count, forks):
    """No-change divert.fleet.site against one ping per host, on `count` twin hosts, `forks` forks."""
    root = tempfile.mkdtemp(prefix="divert-fleet-bench-twin-")
    twin = os.path.join(ROOT, "tests", "twin")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1")
    try:
        spec = os.path.join(root, "fleet.yml")
        with open(spec, "w") as handle:
            handle.write(rollout_fleet(count))
        subprocess.run([sys.executable, os.path.join(twin, "fleetctl"), "up", "--root", root, "--spec", spec],
                       check=True, stdout=subprocess.DEVNULL)
        # Count module executions where they happen: each one starts the host's interpreter once.
        import yaml
        with open(os.path.join(root, "inventory.yml")) as handle:
            inventory = yaml.safe_load(handle)
        hosts = inventory["all"]["children"]["twin"]["hosts"]
        calls = os.path.join(root, "calls")
        os.makedirs(calls)
        for name, host_vars in hosts.items():
            wrapper = os.path.join(calls, name + ".python")
            with open(wrapper, "w") as handle:
                handle.write('#!/bin/sh\necho >> %s\nexec %s "$@"\n' % (
                    os.path.join(calls, name), host_vars["ansible_python_interpreter"]))
            os.chmod(wrapper, 0o755)
            host_vars["ansible_python_interpreter"] = wrapper
        counted = os.path.join(root, "counted.yml")
        with open(counted, "w") as handle:
            yaml.safe_dump(inventory, handle)
        ping = os.path.join(root, "ping.yml")
        with open(ping, "w") as handle:
            handle.write("- name: Ping\n  hosts: twin\n  gather_facts: false\n  tasks:\n"
                         "    - name: Ping\n      ansible.builtin.ping:\n")
        playbook = os.path.join(BIN, "ansible-playbook")
        site_cmd = [playbook, "divert.fleet.site", "-i", counted, "-e", "fleet_spec=%s" % spec, "--forks", str(forks)]
        ping_cmd = [playbook, ping, "-i", counted, "--forks", str(forks)]

        def run(command):
            start = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    universal_newlines=True)
            elapsed = time.perf_counter() - start
            if result.returncode != 0:
                sys.exit("bench: %s failed:\n%s" % (" ".join(command[:2]), result.stdout[-3000:]))
            return elapsed, result.stdout

        def executions():
            total = 0
            for name in hosts:
                path = os.path.join(calls, name)
                if os.path.exists(path):
                    with open(path) as handle:
                        total += sum(1 for _line in handle)
                    os.unlink(path)
            return total / float(len(hosts))

        first, _out = run(site_cmd)
        executions()
        site_times, ping_times, site_calls, ping_calls = [], [], [], []
        for _round in range(rounds):
            elapsed, out = run(site_cmd)
            if "changed=0" not in out or any("changed=0" not in line for line in out.splitlines()
                                             if "ok=" in line and "changed=" in line):
                sys.exit("bench: the second divert.fleet.site run changed something:\n" + out[-3000:])
            site_times.append(elapsed)
            site_calls.append(executions())
            elapsed, _out = run(ping_cmd)
            ping_times.append(elapsed)
            ping_calls.append(executions())
        med_site, med_ping = statistics.median(site_times), statistics.median(ping_times)
        print("rollout   %d twin hosts, --forks %d: first divert.fleet.site run %.2f s" % (len(hosts), forks, first))
        print("rollout   no-change divert.fleet.site median %.2f s, %.1f module executions per host"
              % (med_site, statistics.median(site_calls)))
        print("rollout   ping play                 median %.2f s, %.1f module executions per host"
              % (med_ping, statistics.median(ping_calls)))
        print("rollout   %d hosts: ratio no-change site / ping = %.2fx (target <= 2x)" % (len(hosts), med_site / med_ping))
    finally:
        subprocess.run([sys.executable, os.path.join(twin, "twinctl"), "down", "--root", root],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


PEER_VENV = os.path.join(ROOT, "benchmarks", ".venv-peer")

# A child that validates (or, with "-", only imports the command) and reports its peak memory.
MEASURED = (
    "import resource, sys\n"
    "from ansible_collections.divert.fleet.plugins.module_utils._cli import main\n"
    "code = 0\n"
    "if sys.argv[1] != '-':\n"
    "    code = main(['validate', sys.argv[1], '--format', 'json'])\n"
    "sys.stderr.write('\\nPEAK %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n")


def measured(spec):
    """(seconds, peak KiB) of a child validating spec ("-": importing the command only)."""
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", MEASURED, spec], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, universal_newlines=True)
    elapsed = time.perf_counter() - start
    if child.returncode != 0:
        sys.exit("bench: validating %s failed (exit %d): %s" % (spec, child.returncode, child.stderr[-2000:]))
    return elapsed, int(child.stderr.rsplit("PEAK ", 1)[1].split()[0])


def bench_scale(work, sizes):
    """The table of seconds and memory per host, 1,000 to 50,000 hosts."""
    baseline = min(measured("-")[1] for _ in range(3))
    print("scale     divert-fleet validate, whole process; memory: peak RSS less %.1f MiB of a child that only "
          "imports the command" % (baseline / 1024.0))
    print("scale     %7s %8s %8s %12s %12s" % ("hosts", "seconds", "MiB", "ms/host", "KiB/host"))
    rows = []
    for hosts in sizes:
        spec = os.path.join(work, "scale-%d.yml" % hosts)
        generate(spec, hosts=hosts)
        runs = [measured(spec) for _ in range(max(1, min(5, 20000 // hosts)))]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        rows.append((hosts, seconds, (peak - baseline) / float(hosts)))
        print("scale     %7d %8.3f %8.1f %12.4f %12.2f" % (hosts, seconds, (peak - baseline) / 1024.0,
                                                           1000.0 * seconds / hosts, (peak - baseline) / float(hosts)))
        os.unlink(spec)
    first, last = rows[0], rows[-1]
    print("scale     per-host time at %d / at %d hosts = %.2fx (target <= 1.5x)" % (
        last[0], first[0], (last[1] / last[0]) / (first[1] / first[0])))
    print("scale     memory per host at %d hosts %.2f KiB, marginal between %d and %d %.2f KiB (target <= 8; the "
          "smaller fleets also carry the run's fixed cost)" % (
              last[0], last[2], first[0], last[0], (last[2] * last[0] - first[2] * first[0]) / (last[0] - first[0])))


def peer_python():
    """The python of benchmarks/.venv-peer, made with aerleon in it when missing."""
    python = os.path.join(PEER_VENV, "bin", "python")
    aclgen = os.path.join(PEER_VENV, "bin", "aclgen")
    if not os.path.exists(aclgen):
        print("render    installing aerleon into %s (once)" % os.path.relpath(PEER_VENV, ROOT))
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "aerleon"], check=True)
    return aclgen


AERLEON_NETWORKS = "networks:\n%s" % "".join(
    "  NET%d:\n    values:\n      - address: 10.%d.0.0/16\n      - address: 192.168.%d.0/24\n" % (i, i, i)
    for i in range(8))
AERLEON_SERVICES = ("services:\n  WEB:\n    - port: 80\n      protocol: tcp\n    - port: 443\n      protocol: tcp\n"
                    "    - port: 8000-8100\n      protocol: tcp\n")


def aerleon_tree(root, terms):
    """A policy of `terms` pf terms like the fleet's rules (addresses, ports, one protocol, accept)."""
    for sub in ("pol", "def", "out"):
        os.makedirs(os.path.join(root, sub))
    with open(os.path.join(root, "def", "networks.yaml"), "w") as handle:
        handle.write(AERLEON_NETWORKS)
    with open(os.path.join(root, "def", "services.yaml"), "w") as handle:
        handle.write(AERLEON_SERVICES)
    body = "".join("  - name: t%d\n    destination-address: NET%d\n    destination-port: WEB\n    protocol: tcp\n"
                   "    action: accept\n" % (index, index % 8) for index in range(terms))
    with open(os.path.join(root, "pol", "fleet.yaml"), "w") as handle:
        handle.write("filters:\n- header:\n    targets:\n      packetfilter: \"\"\n  terms:\n" + body)


def bench_render(work, rounds, divert_fleet, sizes, terms):
    """Marginal cost of a rendered rule: divert-fleet against aerleon's pf generator."""
    aclgen = peer_python()
    ours = []
    for hosts in sizes:
        spec = os.path.join(work, "render-%d.yml" % hosts)
        generate(spec, hosts=hosts)
        times = []
        # A new directory each round, the old ones removed after: deleting thousands of files just before
        # a run puts the file system's deferred work into that run's time.
        out_dirs = [os.path.join(work, "rules-%d-%d" % (hosts, index)) for index in range(rounds)]
        for out_dir in out_dirs:
            elapsed, code, err = timed([divert_fleet, "render", spec, "--out-dir", out_dir])
            if code != 0:
                sys.exit("bench: render failed (exit %d): %s" % (code, err[-2000:]))
            times.append(elapsed)
        rules = 0
        for name in os.listdir(out_dirs[0]):
            with open(os.path.join(out_dirs[0], name)) as handle:
                rules += sum(1 for line in handle if line.strip() and not line.startswith("#"))
        ours.append((rules, statistics.median(times)))
        for out_dir in out_dirs:
            shutil.rmtree(out_dir, ignore_errors=True)
    peer = []
    for count in terms:
        root = os.path.join(work, "aerleon-%d" % count)
        aerleon_tree(root, count)
        command = [aclgen, "--base_directory", root, "--definitions_directory", os.path.join(root, "def"),
                   "--output_directory", os.path.join(root, "out"), "--max_renderers", "1"]
        times = []
        for _ in range(rounds):
            shutil.rmtree(os.path.join(root, "out"))
            os.makedirs(os.path.join(root, "out"))
            elapsed, code, err = timed(command)
            if code != 0 or not os.listdir(os.path.join(root, "out")):
                sys.exit("bench: aclgen failed (exit %d): %s" % (code, err[-2000:]))
            times.append(elapsed)
        with open(os.path.join(root, "out", "fleet.pf")) as handle:
            rules = sum(1 for line in handle if line.startswith("pass "))
        peer.append((rules, statistics.median(times)))

    def slope(points):
        (r1, t1), (r2, t2) = points
        return (t2 - t1) / (r2 - r1)

    for name, points in (("divert-fleet render --out-dir", ours), ("aerleon aclgen (packetfilter)", peer)):
        print("render    %-30s %s: %.3f ms a rule" % (name, ", ".join(
            "%d rules %.3f s" % point for point in points), 1000 * slope(points)))
    print("render    ratio of marginal cost aerleon / divert-fleet = %.1fx (target >= 10x)" % (
        slope(peer) / slope(ours)))


def timed(command):
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    return elapsed, result.returncode, result.stderr.decode(errors="replace")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--no-rollout", action="store_true", help="skip the twin rollout benchmark (needs root)")
    parser.add_argument("--scale", default="1000,5000,20000,50000", help="host counts of the scale table")
    parser.add_argument("--rollout-hosts", default="10,50", help="twin host counts of the rollout benchmark")
    parser.add_argument("--forks", type=int, default=10, help="ansible-playbook --forks of the rollout benchmark")
    parser.add_argument("--no-peer", action="store_true", help="skip the render comparison with aerleon")
    args = parser.parse_args()
    divert_fleet = os.path.join(BIN, "divert-fleet")
    check_jsonschema = os.path.join(BIN, "check-jsonschema")
    for tool in (divert_fleet, check_jsonschema):
        if not os.path.exists(tool):
            sys.exit("bench: %s not found; run `make setup` first" % tool)
    # The collection's bytecode, as a first run leaves it (PYTHONDONTWRITEBYTECODE would otherwise have every
    # run compile it again, which pip-installed peers never do).
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "plugins")], check=True,
                   stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="divert-fleet-bench-")
    try:
        spec = os.path.join(work, "fleet.yml")
        generate(spec, hosts=args.hosts)
        size = os.path.getsize(spec)
        ours_cmd = [divert_fleet, "validate", spec, "--format", "json"]
        peer_cmd = [check_jsonschema, "--schemafile", SCHEMA, spec]
        elapsed, code, err = timed(ours_cmd)
        if code != 0:
            sys.exit("bench: the generated fleet does not validate (exit %d): %s" % (code, err[-2000:]))
        elapsed, code, err = timed(peer_cmd)
        if code != 0:
            sys.exit("bench: check-jsonschema rejects the generated fleet (exit %d): %s" % (code, err[-2000:]))
        ours, peer = [], []
        for _ in range(args.rounds):
            ours.append(timed(ours_cmd)[0])
            peer.append(timed(peer_cmd)[0])
        med_ours, med_peer = statistics.median(ours), statistics.median(peer)
        print("fleet: %d hosts, %d KiB, %d rounds alternating, whole processes" % (
            args.hosts, size // 1024, args.rounds))
        print("validate  divert-fleet      median %.3f s (schema + cross-field rules + positions)" % med_ours)
        print("validate  check-jsonschema  median %.3f s (schema only)" % med_peer)
        print("validate  ratio check-jsonschema / divert-fleet = %.2fx (target >= 10x)" % (med_peer / med_ours))
        bench_scale(work, [int(n) for n in args.scale.split(",")])
        if not args.no_peer:
            bench_render(work, max(5, args.rounds), divert_fleet, (1000, 5000), (1000, 4000))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_rollout:
        for count in [int(n) for n in args.rollout_hosts.split(",")]:
            bench_rollout(max(3, args.rounds), count, args.forks)


if __name__ == "__main__":
    main()
