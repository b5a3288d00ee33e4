#!/usr/bin/env python3
"""divert.fleet benchmarks: ratios against a named peer measured in the same run.

1. validate: `divert-fleet validate` (schema + every cross-field rule + positions)
   against `check-jsonschema --schemafile schemas/fleet.schema.json` (schema only)
   on the same generated 1,000-host fleet, whole processes, alternating.
2. render: `divert-fleet render --out-dir` for all hosts, whole process, next to
   validation's time, and rules rendered per second.
3. rollout: on ten twin hosts, a second (no-change) `divert.fleet.site` run against a
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
    with open(path, "w") as handle:
        handle.write("\n".join(out) + "\n")


TEN_HOSTS = """\
version: 1
consumers:
  ips: {port: 8010, sockets: 15, service: suricata, ready_timeout: 60,
        rc_vars: {suricata_divertport: "@PORT@", suricata_divert_listeners: "@SOCKETS@"}}
  classifier: {port: 8400, sockets: 3, service: classifier, reference: true}
profiles:
  edge:
    backend: pf
    platform: opnsense
    consumers: [ips, classifier]
    rules:
      - {name: inspect-web, consumer: ips, interface: igb0, protocol: tcp, to_ports: [80, 443]}
      - {name: classify-dns, consumer: classifier, interface: igb0, protocol: [tcp, udp], to_ports: [53]}
  lab:
    backend: ipfw
    platform: freebsd
    consumers: [{name: ips, sockets: 1}]
    rules:
      - {name: inspect-lab, consumer: ips, interface: vtnet1, protocol: tcp, from: 10.20.0.0/16}
hosts:
%s"""


def bench_rollout(rounds):
    """No-change divert.fleet.site against one ping per host, on ten twin hosts."""
    root = tempfile.mkdtemp(prefix="divert-fleet-bench-twin-")
    twin = os.path.join(ROOT, "tests", "twin")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1")
    try:
        spec = os.path.join(root, "fleet.yml")
        with open(spec, "w") as handle:
            handle.write(TEN_HOSTS % "".join("  fw-%02d: {profile: %s}\n" % (i, "lab" if i > 7 else "edge")
                                             for i in range(1, 11)))
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
        site_cmd = [playbook, "divert.fleet.site", "-i", counted, "-e", "fleet_spec=%s" % spec]
        ping_cmd = [playbook, ping, "-i", counted]

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
        print("rollout   first divert.fleet.site run on %d twin hosts: %.2f s" % (len(hosts), first))
        print("rollout   no-change divert.fleet.site median %.2f s, %.1f module executions per host"
              % (med_site, statistics.median(site_calls)))
        print("rollout   ping play                 median %.2f s, %.1f module executions per host"
              % (med_ping, statistics.median(ping_calls)))
        print("rollout   ratio no-change site / ping = %.2fx (target <= 3x)" % (med_site / med_ping))
    finally:
        subprocess.run([sys.executable, os.path.join(twin, "twinctl"), "down", "--root", root],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


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
    args = parser.parse_args()
    divert_fleet = os.path.join(BIN, "divert-fleet")
    check_jsonschema = os.path.join(BIN, "check-jsonschema")
    for tool in (divert_fleet, check_jsonschema):
        if not os.path.exists(tool):
            sys.exit("bench: %s not found; run `make setup` first" % tool)
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
        ours, peer, renders = [], [], []
        out_dir = os.path.join(work, "rules")
        for _ in range(args.rounds):
            ours.append(timed(ours_cmd)[0])
            peer.append(timed(peer_cmd)[0])
            shutil.rmtree(out_dir, ignore_errors=True)
            renders.append(timed([divert_fleet, "render", spec, "--out-dir", out_dir])[0])
        rule_lines = 0
        for name in os.listdir(out_dir):
            with open(os.path.join(out_dir, name)) as handle:
                rule_lines += sum(1 for line in handle if line.strip() and not line.startswith("#"))
        med_ours, med_peer, med_render = (statistics.median(x) for x in (ours, peer, renders))
        print("fleet: %d hosts, %d KiB, %d rounds alternating, whole processes" % (
            args.hosts, size // 1024, args.rounds))
        print("validate  divert-fleet      median %.3f s (schema + cross-field rules + positions)" % med_ours)
        print("validate  check-jsonschema  median %.3f s (schema only)" % med_peer)
        print("validate  ratio check-jsonschema / divert-fleet = %.2fx (target >= 3x)" % (med_peer / med_ours))
        print("render    divert-fleet      median %.3f s for %d hosts, %d rules: %.0f rules/s "
              "(%.2fx validation's time)" % (med_render, len(os.listdir(out_dir)), rule_lines,
                                             rule_lines / med_render, med_render / med_ours))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_rollout:
        bench_rollout(max(3, args.rounds))


if __name__ == "__main__":
    main()
