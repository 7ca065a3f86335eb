# dervish — one-command set-up, lab, demo and tests. Run as root on Debian/Ubuntu.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
BIN      := $(CURDIR)/$(VENV)/bin
STAMP    := $(VENV)/.installed
# The oldest ansible-core line the collection supports (meta/runtime.yml requires_ansible, the roles'
# min_ansible_version): `make oldest-core` runs ansible-test sanity and a lab run of site.yml with it.
OLDEST_CORE  := 2.16
OLDEST_VENV  := .venv-core$(subst .,,$(OLDEST_CORE))
OLDEST_STAMP := $(OLDEST_VENV)/.installed
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_HOME := $(CURDIR)/.ansible

# The test suite and molecule start labs of their own, on other addresses, so a lab started with
# `make lab-up` / `make demo` keeps running undisturbed while tests run.
# Integration files run on TEST_WORKERS pytest-xdist workers, each with a lab of its own (worker N on
# the Nth range of DERVISH_TEST_LAB_NETS, in .lab-test-gwN); TEST_WORKERS=0 runs them in one process.
TEST_WORKERS     ?= 3
TEST_LAB_ENV     := DERVISH_TEST_LAB_DIR=$(CURDIR)/.lab-test DERVISH_TEST_LAB_NET=127.0.12 \
                    DERVISH_TEST_LAB_NETS=127.0.12,127.0.16,127.0.17,127.0.18
MOLECULE_LAB_ENV := LAB_DIR=$(CURDIR)/.lab-molecule LAB_NET=127.0.13
OLDEST_LAB_ENV   := DERVISH_TEST_LAB_DIR=$(CURDIR)/.lab-oldest-core DERVISH_TEST_LAB_NET=127.0.15 \
                    DERVISH_TEST_CORE_VENV=$(CURDIR)/$(OLDEST_VENV)

.PHONY: help setup system-packages venv lab-up lab-down lab-status demo test lint unit integration \
        molecule sanity oldest-core bench clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

system-packages:  ## apt packages (rsync, openssh, mkfs tools, logrotate, plocate, dirvish, ...)
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@mkdir -p collections/ansible_collections/dervish
	@ln -sfn ../../.. collections/ansible_collections/dervish/backup
	@touch $@

$(OLDEST_STAMP):
	python3 -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q --disable-pip-version-check 'ansible-core==$(OLDEST_CORE).*'
	@touch $@

venv: $(STAMP)  ## the Python venv in .venv/ (ansible-core, ansible-runner, test tools, `dervish`)

setup: system-packages venv  ## everything `make demo` and `make test` need

lab-up: setup  ## start the lab (hosts backup, laptop1, laptop2, firewall); idempotent
	@lab/labctl up

lab-down:  ## stop the lab and remove its state; safe to run twice
	@lab/labctl down

lab-status:  ## show which lab hosts run
	@lab/labctl status

demo: lab-up  ## provision the lab, back up, change files, back up again, show status and what each image added
	@bash scripts/demo.sh

lint: setup  ## ruff, shellcheck, ansible-lint (production profile), changelog fragments
	ruff check .
	shellcheck lab/labctl lab/*.sh scripts/*.sh .ci/run
	ansible-lint --profile production
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

unit: setup  ## unit tests
	python -m pytest -q tests/unit

integration: setup  ## integration tests: engine, modules and playbooks against a lab of their own
	$(TEST_LAB_ENV) python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests/integration

molecule: setup  ## molecule scenario: its create/destroy start and stop a lab of its own
	$(MOLECULE_LAB_ENV) molecule test --all

sanity: setup  ## ansible-test sanity on a real-path copy of the collection
	bash scripts/sanity.sh

oldest-core: setup $(OLDEST_STAMP)  ## with the oldest supported ansible-core (OLDEST_CORE): ansible-test sanity, site.yml on a lab of its own
	@# empty-init: 2.16 wants module_utils/**/__init__.py empty, 2.17+ do not (the engine's holds __version__);
	@# `make sanity` (the newest core) still checks modules/ and tests/unit/ for it.
	VENV=$(CURDIR)/$(OLDEST_VENV) SANITY_WORK=$(CURDIR)/.ansible/sanity-core$(subst .,,$(OLDEST_CORE)) \
	  bash scripts/sanity.sh --skip-test empty-init
	$(OLDEST_LAB_ENV) python -m pytest -q tests/compat

test: setup lint unit integration molecule sanity oldest-core  ## the whole test suite (what CI runs)
	@echo "make test: all test layers passed"

bench: setup  ## benchmarks: dervish against plain rsync, printed as ratios
	python benchmarks/bench_incremental.py

clean: lab-down  ## remove the venv and generated files (not the lab of another LAB_DIR)
	rm -rf $(VENV) $(OLDEST_VENV) collections .ansible tests/output .pytest_cache .ruff_cache *.egg-info
