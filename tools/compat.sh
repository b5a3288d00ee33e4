#!/usr/bin/env bash
# The unit tests on the older ansible-core minors that meta/runtime.yml's requires_ansible claims
# (run by `make compat`; .venv itself has the newest, requirements-dev.txt's):
#
#   tools/compat.sh [MINOR...]      default: the minors of COMPAT_MINORS below
#
# Each minor gets an environment .venv/compat/ansible-core-X.Y with that minor's newest patch
# release as pinned here, the collection's runtime packages and the test tools at
# requirements-dev.txt's versions, and divert.fleet resolvable from .venv/collections as in .venv.
# It is rebuilt when a pin or requirements-dev.txt changes. Then `pytest tests/unit` runs there
# (the playbook tests run that environment's ansible-playbook), and the Molecule scenario `default`
# rolls the example fleet out on the FreeBSD twin with that environment's ansible-playbook first on
# PATH (Molecule itself is .venv's; the twin needs root). COMPAT_MOLECULE=0 leaves Molecule out.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
cd "$root"

declare -A PINS=([2.17]=2.17.14 [2.18]=2.18.19)
COMPAT_MINORS=(2.17 2.18)
minors=("$@")
[[ ${#minors[@]} -gt 0 ]] || minors=("${COMPAT_MINORS[@]}")

# The packages the unit tests import besides ansible-core, at the versions .venv has.
packages=()
for name in PyYAML jsonschema jsonschema_rs hypothesis pytest; do
    packages+=("$(grep -i "^${name}==" requirements-dev.txt)")
done

status=0
for minor in "${minors[@]}"; do
    pin="${PINS[$minor]:-}"
    if [[ -z "$pin" ]]; then
        echo "compat: no ansible-core pin for $minor (known: ${!PINS[*]})" >&2
        exit 2
    fi
    env_dir="$venv/compat/ansible-core-$minor"
    key="$( { echo "$pin"; printf '%s\n' "${packages[@]}"; "$venv/bin/python" -c 'import sys; print(sys.version)'; echo "$root"; } | sha256sum | cut -c1-16)"
    if [[ ! -f "$env_dir/.installed-$key" ]]; then
        echo "compat: creating $env_dir (ansible-core $pin)"
        "$venv/bin/python" -m venv --clear "$env_dir"
        "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
            "ansible-core==$pin" "${packages[@]}" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
        site_packages="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
        printf '%s\n' "$venv/collections" >"$site_packages/divert_fleet_collections.pth"
        # divert-fleet beside the interpreter, as in .venv (the twin's fleetctl looks for it there).
        { printf '#!%s\n' "$env_dir/bin/python"; tail -n +2 bin/divert-fleet; } >"$env_dir/bin/divert-fleet"
        chmod 0755 "$env_dir/bin/divert-fleet"
        touch "$env_dir/.installed-$key"
    fi
    echo "compat: pytest tests/unit on ansible-core $("$env_dir/bin/python" -c 'import ansible; print(ansible.__version__)')"
    mkdir -p tests/output
    if ! (PATH="$env_dir/bin:$PATH" "$env_dir/bin/python" -m pytest -q -p no:cacheprovider tests/unit \
            | tee "tests/output/compat-$minor.log" | tail -n 3); then
        status=1
    fi
    if [[ "${COMPAT_MOLECULE:-1}" != 0 ]]; then
        echo "compat: molecule test -s default with ansible-playbook $minor"
        if ! PATH="$env_dir/bin:$venv/bin:$PATH" NO_COLOR=1 "$venv/bin/molecule" test -s default \
                >"tests/output/compat-$minor-molecule.log" 2>&1; then
            tail -n 40 "tests/output/compat-$minor-molecule.log"
            status=1
        else
            grep -E '^default +: actions=' "tests/output/compat-$minor-molecule.log" || true
        fi
    fi
done
exit "$status"
