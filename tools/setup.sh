#!/usr/bin/env bash
# Create or refresh the development environment in .venv (run by `make setup`).
#
# - .venv with the exact packages of requirements-dev.txt; reinstalled from scratch only when that
#   file, the Python version or the checkout's location changes (a stamp file records which);
# - the checkout linked as .venv/collections/ansible_collections/divert/fleet, and that directory on
#   .venv's sys.path, so both Ansible and plain Python resolve `divert.fleet`;
# - .venv/bin/divert-fleet;
# - the pip bootstrap script ansible-test would otherwise download (see write_get_pip below).
# Quick and silent when everything is already in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3.11}"
venv="$root/.venv"
requirements="$root/requirements-dev.txt"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup: $python not found; Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

# The stamp's name changes with whatever makes the installed environment stale.
key="$( { sha256sum <"$requirements"; "$python" -c 'import sys; print(sys.version)'; echo "$root"; } | sha256sum | cut -c1-16)"
stamp="$venv/.installed-$key"

if [[ ! -f "$stamp" ]]; then
    echo "setup: creating .venv with the packages of requirements-dev.txt"
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
        -r "$requirements"
    touch "$stamp"
fi

# The collection, resolvable as divert.fleet. The link is relative so that a copied checkout
# still points at itself.
collections="$venv/collections"
link="$collections/ansible_collections/divert/fleet"
mkdir -p "$(dirname "$link")"
if [[ "$(readlink "$link" 2>/dev/null || true)" != "../../../.." ]]; then
    rm -rf "$link"
    ln -s ../../../.. "$link"
fi

# `import ansible_collections.divert.fleet...` from .venv's Python, without Ansible's loader.
site_packages="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
pth="$site_packages/divert_fleet_collections.pth"
if [[ "$(cat "$pth" 2>/dev/null || true)" != "$collections" ]]; then
    printf '%s\n' "$collections" >"$pth"
fi

# divert-fleet on .venv/bin: the repository's launcher with the shebang of .venv's Python.
launcher="$venv/bin/divert-fleet"
wanted="$(printf '#!%s\n' "$venv/bin/python"; tail -n +2 bin/divert-fleet)"
if [[ ! -x "$launcher" || "$(cat "$launcher")" != "$wanted" ]]; then
    printf '%s\n' "$wanted" >"$launcher.tmp"
    chmod 0755 "$launcher.tmp"
    mv "$launcher.tmp" "$launcher"
fi

# ansible-test (--venv) bootstraps pip in each virtual environment it creates with a get-pip script
# that it downloads from its own file server and caches under ~/.ansible/test/cache. Where that
# server cannot be reached, this stand-in does the same job from the standard library's ensurepip
# and the package index pip is configured for. The file name carries the pip version that
# ansible-test asks for (ansible_test/_internal/python_requirements.py, get_venv_packages).
write_get_pip() {
    local pip_version cache target
    pip_version="$("$venv/bin/python" -c '
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="3.11"))["pip"])')"
    cache="$HOME/.ansible/test/cache"
    target="$cache/get_pip_${pip_version//./_}.py"
    # Leave a real get-pip script alone; replace a missing or outdated stand-in.
    if [[ -f "$target" ]] && ! grep -q '^# divert.fleet get-pip stand-in' "$target"; then
        return
    fi
    if ! cmp -s "$root/tools/get_pip_standin.py" "$target"; then
        mkdir -p "$cache"
        cp "$root/tools/get_pip_standin.py" "$target.tmp"
        mv "$target.tmp" "$target"
    fi
}
write_get_pip
