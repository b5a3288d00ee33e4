#!/usr/bin/env bash
# CHANGELOG.rst must be what antsibull-changelog makes of changelogs/changelog.yaml (run by
# `make changelog-lint`): regenerate it in a copy and compare.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/divert-fleet-changelog.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cp -r "$root/changelogs" "$root/galaxy.yml" "$root/CHANGELOG.rst" "$work/"
(cd "$work" && "$root/.venv/bin/antsibull-changelog" generate)
if ! cmp -s "$root/CHANGELOG.rst" "$work/CHANGELOG.rst"; then
    echo "CHANGELOG.rst is not what changelogs/changelog.yaml gives; run: .venv/bin/antsibull-changelog generate" >&2
    diff -u "$root/CHANGELOG.rst" "$work/CHANGELOG.rst" >&2 || true
    exit 1
fi
echo "CHANGELOG.rst matches changelogs/changelog.yaml"
