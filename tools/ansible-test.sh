#!/usr/bin/env bash
# Run ansible-test on the collection as it ships: usage `tools/ansible-test.sh sanity|units [ARGS...]`.
#
# ansible-test only runs inside ansible_collections/NAMESPACE/NAME/, and it lists the files to test
# through git when any directory above that is a git checkout. So this builds the collection
# artifact from the checkout (galaxy.yml's build_ignore applies: the FreeBSD twin, benchmarks and the
# development tooling are not part of what is tested), unpacks it into
# ansible_collections/divert/fleet/ under a temporary directory, runs .venv's ansible-test there,
# and copies ansible-test's reports back to the checkout's tests/output/ (ignored by git).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 sanity|units [ansible-test options...]" >&2
    exit 2
fi
command="$1"
shift

work="$(mktemp -d "${TMPDIR:-/tmp}/divert-fleet-ansible-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
collection="$work/ansible_collections/divert/fleet"

"$venv/bin/ansible-galaxy" collection build --output-path "$work" "$root" >/dev/null
mkdir -p "$collection"
tar -xzf "$work"/divert-fleet-*.tar.gz -C "$collection"

status=0
(cd "$collection" && "$venv/bin/ansible-test" "$command" "$@") || status=$?

if [[ -d "$collection/tests/output" ]]; then
    mkdir -p "$root/tests/output"
    for kind in bot junit data coverage; do
        if [[ -d "$collection/tests/output/$kind" ]]; then
            rm -rf "${root:?}/tests/output/$kind"
            cp -r "$collection/tests/output/$kind" "$root/tests/output/$kind"
        fi
    done
fi
exit "$status"
