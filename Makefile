# divert.fleet: development, test and demo commands. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Steps run one after another, in the order written, even under `make -j`.
.NOTPARALLEL:

VENV := .venv
BIN := $(VENV)/bin
# The tools find each other (ansible-lint runs ansible-playbook, ansible-test runs ansible-galaxy).
export PATH := $(CURDIR)/$(BIN):$(PATH)
PYTHON_VERSION := 3.11
# pytest-xdist workers: 0 runs the tests in one process, which is the quicker on a two-core
# machine with the suite as it is; `make test PYTEST_WORKERS=auto` spreads them over every core.
PYTEST_WORKERS ?= 0
PYTEST_PATHS := $(wildcard tests/unit tests/twin/tests tests/rollout)
# Where ansible-test writes its results is tests/output/ (see tools/ansible-test.sh).
ANSIBLE_TEST := tools/ansible-test.sh
ANSIBLE_TEST_OPTIONS := --venv --python $(PYTHON_VERSION) --color no

.PHONY: help setup test pytest sanity units lint demo bench build changelog-lint clean distclean \
	compat artifact docs docs-lint release-notes

help:
	@echo 'make setup      create .venv (pinned tools, divert.fleet resolvable, .venv/bin/divert-fleet)'
	@echo 'make test       everything CI runs: pytest, ansible-test sanity and units, ansible-lint'
	@echo 'make demo       validate, plan and roll out the example fleet on twin hosts under traffic'
	@echo 'make bench      validate against check-jsonschema, a 1k-50k host scale table, render against aerleon'
	@echo 'make pytest | compat | molecule | sanity | units | lint | changelog-lint | docs-lint | artifact'
	@echo '                one part of make test'
	@echo 'make compat     unit tests and molecule default on the older ansible-core minors claimed (2.17, 2.18)'
	@echo 'make artifact   the built artifact through galaxy-importer, ansible-lint as installed, a clean environment'
	@echo 'make docs       the docs site (antsibull-docs, Sphinx) in docs/build/html'
	@echo 'make build      build the collection artifact (divert-fleet-VERSION.tar.gz)'
	@echo 'make release-notes   release the changelog fragments as galaxy.yml'"'"'s version (RELEASE_DATE=YYYY-MM-DD)'
	@echo 'make clean      remove test results, caches and built artifacts; distclean also .venv'

setup:
	@tools/setup.sh

# ---- molecule -------------------------------------------------------------------------------
# The Molecule scenarios that run on the FreeBSD twin (extensions/molecule/, README there; the twin
# needs root): `default` rolls the example fleet out under traffic, runs it again expecting no
# change, and verifies the twin's report, the loaded rules and the groups; `partial-bind` has a
# consumer bind 1 socket of 3 and checks that the rollout fails for that host and leaves its
# firewall alone. Molecule finds a collection's scenarios from the repository root. The scenarios
# on real hosts (freebsd, opnsense) need a VM and are run by hand.
# ----------------------------------------------------------------------------------------------
.PHONY: molecule
molecule: setup
	env $$([[ -t 1 ]] || echo NO_COLOR=1) $(BIN)/molecule test -s default -s partial-bind

test: setup pytest compat molecule sanity units lint changelog-lint docs-lint docs artifact
	@echo 'make test: every step passed; pytest said:'
	@tail -n 1 tests/output/pytest.log

# The log keeps pytest's summary line so that `make test` can end with it.
pytest: setup
	@mkdir -p tests/output
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_PATHS) | tee tests/output/pytest.log

sanity: setup
	$(ANSIBLE_TEST) sanity $(ANSIBLE_TEST_OPTIONS)

units: setup
	$(ANSIBLE_TEST) units $(ANSIBLE_TEST_OPTIONS)

lint: setup
	$(BIN)/ansible-lint $$([[ -t 1 ]] || echo --nocolor)

# requires_ansible (meta/runtime.yml) claims every minor from 2.17; .venv has 2.19, tools/compat.sh
# runs the unit tests and the Molecule scenario default (the twin) on 2.17 and 2.18, in environments
# of their own under .venv/compat/.
compat: setup
	@tools/compat.sh

# The artifact as Galaxy and its users see it: galaxy-importer, ansible-lint --profile production
# in the installed collection, the validate playbook and bin/divert-fleet in a clean environment.
artifact: setup
	@tools/check-artifact.sh

docs: setup
	@tools/docs.sh

docs-lint: setup
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs .

demo: setup
	@tools/demo.sh

bench: setup
	$(BIN)/python benchmarks/bench.py

build: setup
	$(BIN)/ansible-galaxy collection build --force

changelog-lint: setup
	$(BIN)/antsibull-changelog lint
	@tools/changelog-check.sh

# Cut a release's changelog: the fragments no release has taken yet go into the release of
# galaxy.yml's version, and CHANGELOG.rst is written again (changelogs/README.md). Run again for the
# same version, it adds the fragments that arrived since.
VERSION = $(shell sed -n 's/^version: *//p' galaxy.yml)
RELEASE_DATE ?= $(shell date -u +%Y-%m-%d)
release-notes: setup
	$(BIN)/antsibull-changelog release --version $(VERSION) --date $(RELEASE_DATE)

clean:
	rm -rf tests/output .pytest_cache .hypothesis divert-fleet-*.tar.gz docs/build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
