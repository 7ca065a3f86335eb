# dervish — one-command set-up, lab, demo and tests. Run as root on Debian/Ubuntu.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
BIN      := $(CURDIR)/$(VENV)/bin
STAMP    := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_HOME := $(CURDIR)/.ansible

# The test suite and molecule start labs of their own, on other addresses, so a lab started with
# `make lab-up` / `make demo` keeps running undisturbed while tests run.
TEST_LAB_ENV     := DERVISH_TEST_LAB_DIR=$(CURDIR)/.lab-test DERVISH_TEST_LAB_NET=127.0.12
MOLECULE_LAB_ENV := LAB_DIR=$(CURDIR)/.lab-molecule LAB_NET=127.0.13

.PHONY: help setup system-packages venv lab-up lab-down lab-status demo test lint unit integration \
        molecule sanity bench clean

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

venv: $(STAMP)  ## the Python venv in .venv/ (ansible-core, ansible-runner, test tools, `dervish`)

setup: system-packages venv  ## everything `make demo` and `make test` need

lab-up: setup  ## start the lab (hosts backup, laptop1, laptop2, firewall); idempotent
	@lab/labctl up

lab-down:  ## stop the lab and remove its state; safe to run twice
	@lab/labctl down

lab-status:  ## show which lab hosts run
	@lab/labctl status

demo: lab-up  ## set up, start the lab, provision it, back it up and show the images
	ansible-playbook -i inventory/lab playbooks/lab_hosts.yml
	ansible-playbook -i inventory/lab playbooks/site.yml
	ansible-playbook -i inventory/lab playbooks/backup.yml
	@echo
	@echo "The lab keeps running: ssh -F .lab/ssh_config backup   (stop it with: make lab-down)"

lint: setup  ## ruff, shellcheck, ansible-lint (production profile), changelog fragments
	ruff check .
	shellcheck lab/labctl lab/*.sh scripts/*.sh .ci/run
	ansible-lint --profile production
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

unit: setup  ## unit tests
	python -m pytest -q tests/unit

integration: setup  ## integration tests: engine, modules and playbooks against a lab of their own
	$(TEST_LAB_ENV) python -m pytest -q tests/integration

molecule: setup  ## molecule scenario: its create/destroy start and stop a lab of its own
	$(MOLECULE_LAB_ENV) molecule test --all

sanity: setup  ## ansible-test sanity on a real-path copy of the collection
	bash scripts/sanity.sh

test: setup lint unit integration molecule sanity  ## the whole test suite (what CI runs)
	@echo "make test: all test layers passed"

bench: setup  ## benchmarks: dervish against plain rsync, printed as ratios
	python benchmarks/bench_incremental.py

clean: lab-down  ## remove the venv and generated files (not the lab of another LAB_DIR)
	rm -rf $(VENV) collections .ansible tests/output .pytest_cache .ruff_cache *.egg-info
