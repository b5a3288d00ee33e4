#!/usr/bin/env bash
# Build the collection's docs site (run by `make docs`): antsibull-docs writes rst for every module,
# plugin and role of divert.fleet and for the guides of docs/docsite/, and Sphinx turns them into
# HTML under docs/build/html/ (ignored by git). Warnings are errors, and nothing is fetched: the
# links into Ansible's docs resolve against docs/sphinx/ansible-refs.txt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
export PATH="$venv/bin:$PATH"
build="$root/docs/build"
sphinx="$root/docs/sphinx"
cd "$root"  # ansible.cfg there makes divert.fleet resolvable from .venv/collections

rm -rf "$build"
mkdir -p "$build/rst"
chmod 0755 "$build" "$build/rst"  # antsibull-docs wants its output directory writable by its owner only

# The intersphinx inventory (Sphinx's version 2 format) of the Ansible labels we refer to.
python - "$sphinx/ansible-refs.txt" "$build/ansible_devel.inv" <<'PY'
import sys
import zlib

lines = []
with open(sys.argv[1]) as refs:
    for line in refs:
        if line.strip() and not line.startswith("#"):
            label, page, title = line.split(None, 2)
            lines.append("%s std:label -1 %s %s\n" % (label, page, title.strip()))
with open(sys.argv[2], "wb") as inventory:
    inventory.write(b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
                    b"# The remainder of this file is compressed using zlib.\n")
    inventory.write(zlib.compress("".join(sorted(lines)).encode("utf-8")))
PY

antsibull-docs --config-file "$sphinx/antsibull-docs.cfg" collection --use-current --fail-on-error \
    --dest-dir "$build/rst" divert.fleet
cp "$sphinx/index.rst" "$build/rst/index.rst"
sphinx-build -q -b html -c "$sphinx" -W --keep-going "$build/rst" "$build/html"
echo "docs: $build/html/index.html"
