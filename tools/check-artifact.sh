#!/usr/bin/env bash
# Check the collection artifact as Galaxy and its users see it (run by `make artifact`):
#
# 1. build divert-fleet-VERSION.tar.gz from the checkout (galaxy.yml's build_ignore applies);
# 2. galaxy-importer on the tarball, offline (settings: tools/galaxy-importer.cfg): it must finish
#    with no ERROR and no WARNING line, which includes every finding of the ansible-lint run it makes;
# 3. install the tarball with `ansible-galaxy collection install` into an empty collections
#    directory and run `ansible-lint --profile production` in the installed
#    ansible_collections/divert/fleet, as a user would.
#
# Ansible also finds collections on Python's sys.path, and .venv's sys.path holds the checkout
# (tools/setup.sh); ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false keeps every step on the artifact.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
export PATH="$venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_NOCOLOR=1
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

work="$(mktemp -d "${TMPDIR:-/tmp}/divert-fleet-artifact.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export ANSIBLE_LOCAL_TEMP="$work/ansible-tmp" ANSIBLE_HOME="$work/ansible-home"

# From the work directory, where no ansible.cfg points Ansible at the checkout.
cd "$work"
ansible-galaxy collection build --output-path "$work" "$root" >/dev/null
tarball="$(echo "$work"/divert-fleet-*.tar.gz)"
echo "artifact: $(basename "$tarball"), $(tar -tzf "$tarball" | grep -cv '/$') files"

echo "galaxy-importer $(python -c 'import importlib.metadata as m; print(m.version("galaxy-importer"))'):"
mkdir -p "$work/importer"
status=0
(cd "$work/importer" && GALAXY_IMPORTER_CONFIG="$root/tools/galaxy-importer.cfg" \
    GALAXY_IMPORTER_TMP_ROOT_DIR="$work/importer" GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP="$work/importer/tmp" \
    python -m galaxy_importer.main "$tarball") >"$work/importer.log" 2>&1 || status=$?
sed 's/^/  /' "$work/importer.log"
# One finding is the tools', not the artifact's: galaxy-importer sets ANSIBLE_COLLECTIONS_PATH to the
# ansible_collections directory itself, and ansible-lint looks for an `import_playbook:
# divert.fleet.NAME` under PATH/ansible_collections/divert/fleet/playbooks, one level too deep, so
# it cannot find the collection's own playbooks (extensions/molecule/shared/vm_converge.yml imports
# divert.fleet.site). The ansible-lint run below, with a collections path as users have it,
# resolves and checks the same import.
known='^WARNING: ERROR +Failed to find divert\.fleet\.[a-z_]+ playbook\.$'
# galaxy-importer also names every sanity ignore file it finds. The collection's ignore one check:
# bin/divert-fleet's python3 shebang (tests/sanity/ignore-*.txt says why); anything more fails here.
for ignore in "$root"/tests/sanity/ignore-*.txt; do
    if grep -vqE '^bin/divert-fleet shebang # ' "$ignore"; then
        echo "$ignore ignores more than bin/divert-fleet's shebang:" >&2
        cat "$ignore" >&2
        exit 1
    fi
done
known="$known|^WARNING: Ignore files skip ansible-test sanity tests, found ignore-2\.[0-9]+\.txt with 1 statement\(s\)$"
if [[ $status -ne 0 ]] || grep -E '^(ERROR|WARNING|CRITICAL):' "$work/importer.log" | grep -qvE "$known"; then
    echo "galaxy-importer: the artifact is refused or has findings (exit $status)" >&2
    exit 1
fi
if grep -qE "$known" "$work/importer.log"; then
    echo "galaxy-importer: accepted, no findings but the ones explained above"
else
    echo "galaxy-importer: accepted, no findings"
fi

collections="$work/collections"
ANSIBLE_COLLECTIONS_PATH="$collections" ansible-galaxy collection install --offline -p "$collections" "$tarball" >/dev/null
installed="$collections/ansible_collections/divert/fleet"
echo "ansible-lint --profile production in the installed collection:"
(cd "$installed" && ANSIBLE_COLLECTIONS_PATH="$collections" \
    ansible-lint --profile production --nocolor --offline 2>&1) | sed 's/^/  /'

# ---- the installed collection in a clean environment ---------------------------------------------
# A virtual environment with ansible-core (the version of requirements-dev.txt) and the packages of
# the collection's requirements.txt only, as a Galaxy user has it: no checkout on its sys.path, no
# development tools. Kept in .venv/ and rebuilt when either file changes.
key="$( { grep -i '^ansible-core==' "$root/requirements-dev.txt"; cat "$root/requirements.txt"; } | sha256sum | cut -c1-16)"
clean="$venv/clean-$key"
if [[ ! -f "$clean/.installed" ]]; then
    rm -rf "$venv"/clean-*
    echo "creating a clean environment: ansible-core and requirements.txt"
    "$venv/bin/python" -m venv "$clean"
    "$clean/bin/python" -m pip install --quiet --disable-pip-version-check \
        "$(grep -i '^ansible-core==' "$root/requirements-dev.txt")" -r "$root/requirements.txt" \
        -c "$root/requirements-dev.txt" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    touch "$clean/.installed"
fi
if "$clean/bin/python" -c 'import ansible_collections.divert.fleet' 2>/dev/null; then
    echo "the clean environment imports divert.fleet from somewhere else" >&2
    exit 1
fi
# PATH has python3 (the clean environment's) and no `python`, as on many systems.
user="$work/user"
mkdir -p "$user/bin"
cp "$installed/examples/broken.yml" "$installed/examples/fleet.yml" "$user/"
ln -s "$installed/bin/divert-fleet" "$user/bin/divert-fleet"
ln -s "$clean/bin/ansible-playbook" "$user/bin/ansible-playbook"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$clean/bin/python3" >"$user/bin/python3"
chmod +x "$user/bin/python3"
in_clean() {
    (cd "$user" && env PATH="$user/bin:/usr/bin:/bin" ANSIBLE_COLLECTIONS_PATH="$collections" \
        PYTHONNOUSERSITE=1 "$@")
}
expect_exit() {  # expect_exit CODE COMMAND...: run in the clean environment, demand that exit code
    local want="$1" got=0
    shift
    in_clean "$@" >"$work/out" 2>"$work/err" || got=$?
    if [[ $got -ne $want ]]; then
        echo "'$*' exited $got, not $want:" >&2
        cat "$work/out" "$work/err" >&2
        exit 1
    fi
}

echo "clean environment (ansible-core $("$clean/bin/python" -c 'import ansible; print(ansible.__version__)') and requirements.txt):"
# The playbook writes the SARIF report of an invalid spec, then fails as it should.
expect_exit 2 ansible-playbook divert.fleet.validate -e fleet_spec=broken.yml -e fleet_format=sarif \
    -e fleet_dest=playbook.sarif
# The command, three ways: the installed file run directly (its shebang finds python3), through a
# link on PATH, and given to python3.
expect_exit 1 "$installed/bin/divert-fleet" validate broken.yml --format sarif
cp "$work/out" "$user/direct.sarif"
expect_exit 1 divert-fleet validate broken.yml --format sarif
cp "$work/out" "$user/path.sarif"
expect_exit 1 python3 "$installed/bin/divert-fleet" validate broken.yml --format sarif
cp "$work/out" "$user/python3.sarif"
for copy in direct path python3; do
    if ! cmp -s "$user/playbook.sarif" "$user/$copy.sarif"; then
        echo "the playbook's SARIF report differs from the command's ($copy):" >&2
        diff "$user/playbook.sarif" "$user/$copy.sarif" >&2 || true
        exit 1
    fi
done
echo "  ansible-playbook divert.fleet.validate wrote broken.yml's SARIF report, $(wc -c <"$user/playbook.sarif") bytes,"
echo "  byte for byte what the installed bin/divert-fleet prints (run directly, through PATH, by python3)"
expect_exit 0 divert-fleet validate fleet.yml
echo "  divert-fleet validate fleet.yml: $(tail -n 1 "$work/out")"

# What ansible-builder puts into an execution environment for this collection: requirements.txt,
# less what every image has (ansible-core, PyYAML).
introspected="$(ansible-builder introspect "$collections" | sed -n 's/^- .\(.*\)  # from collection divert\.fleet.$/\1/p')"
declared="$(grep -vE '^\s*(#|$)' "$root/requirements.txt" | grep -viE '^(pyyaml|ansible-core)\b' | sed 's/\s*#.*//')"
if [[ "$introspected" != "$declared" ]]; then
    echo "ansible-builder introspect gives other Python requirements than requirements.txt:" >&2
    diff <(echo "$declared") <(echo "$introspected") >&2 || true
    exit 1
fi
echo "ansible-builder introspect: $(echo "$introspected" | paste -sd ' ')"
