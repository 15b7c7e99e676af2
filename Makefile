# selfheal.devops developer commands. `make test` is what CI runs (.ci/run); `make demo` shows the product.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The checkout is the collection root; ansible tooling wants it under ansible_collections/<ns>/<name>.
COLLECTIONS := $(CURDIR)/build/collections
COLLECTION_DIR := $(COLLECTIONS)/ansible_collections/selfheal/devops
# ansible-test bootstraps pip in its sanity venvs with a script from an unreachable host; see toolchain notes.
ANSIBLE_TEST_PIP := 24.2
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_HOST_KEY_CHECKING := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv collection system-deps sanity-bootstrap lint sanity units integration e2e molecule test build demo bench docs clean

SYSTEM_PACKAGES := nginx haproxy chromium openssh-server

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

venv: $(STAMP) $(VENV)/.import-path ## create .venv with the pinned dev/test requirements and the project's import path
$(STAMP): requirements-dev.txt requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> installing pinned requirements into .venv"
	@$(BIN)/pip install --quiet --upgrade pip 2> >(grep -v 'is ignored' >&2)
	@$(BIN)/pip install --quiet -r requirements-dev.txt 2> >(grep -v 'is ignored' >&2)
	@touch $@

# One import path for tests, benchmarks and the demo, in the venv's site-packages: tests/ (the packages `sandbox`
# and `utils`), demo/ (run_demo, which the self-healing benchmark drives) and build/collections (ansible_collections).
$(VENV)/.import-path: $(STAMP)
	@mkdir -p $(COLLECTIONS)
	@printf '%s\n' $(CURDIR)/tests $(CURDIR)/demo $(COLLECTIONS) > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/selfheal-devops-dev.pth"
	@touch $@

collection: $(COLLECTION_DIR) ## link the checkout into build/collections/ansible_collections/selfheal/devops
$(COLLECTION_DIR):
	@mkdir -p $(dir $@)
	@ln -sfn $(CURDIR) $@

system-deps: ## install nginx and HAProxy from apt when missing (root on Debian/Ubuntu), else say what is needed
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo ">> installing$$missing from apt"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
		else echo "Missing system packages:$$missing (install them, e.g. sudo apt-get install$$missing)"; exit 1; fi; \
	fi

sanity-bootstrap: venv ## make ansible-test sanity work offline (pip wheel + get-pip stand-in in its cache)
	@mkdir -p $(ANSIBLE_TEST_CACHE) $(CURDIR)/build
	@test -f $(ANSIBLE_TEST_CACHE)/pip-$(ANSIBLE_TEST_PIP)-py3-none-any.whl || \
		$(BIN)/pip download --quiet --no-deps --only-binary=:all: -d $(ANSIBLE_TEST_CACHE) pip==$(ANSIBLE_TEST_PIP) 2> >(grep -v 'is ignored' >&2)
	@cp tests/utils/get_pip_offline.py $(ANSIBLE_TEST_CACHE)/get_pip_$(subst .,_,$(ANSIBLE_TEST_PIP)).py

lint: venv collection ## ansible-lint (production profile)
	$(BIN)/ansible-lint --offline

# ansible-test resolves the physical working directory, so it cannot run through the symlink: test a copy
# of the tracked (and new, unignored) files in a per-run ansible_collections tree outside the checkout (inside
# it, ansible-test would ask the checkout's git and skip the ignored copy). SANITY_ARGS narrows it.
SANITY_ARGS ?=
sanity: sanity-bootstrap ## ansible-test sanity, no ignore files (SANITY_ARGS="plugins/modules/x.py" to narrow)
	@set -e; run=$$(mktemp -d "$${TMPDIR:-/tmp}/selfheal-sanity.XXXXXX"); dest=$$run/ansible_collections/selfheal/devops; \
	trap 'rm -rf "$$run"' EXIT; mkdir -p $$dest; \
	git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - --ignore-failed-read 2>/dev/null | tar -xf - -C $$dest; \
	cd $$dest && $(BIN)/ansible-test sanity --python 3.11 --venv --color no $(SANITY_ARGS)

units: venv collection ## unit tests (pure logic, transport against a loopback server)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Integration tests run in INTEGRATION_WORKERS processes (pytest-xdist), a test file per worker: most of their time is
# spent waiting for ansible-playbook, the sandbox and local services. INTEGRATION_WORKERS=0 runs them in this process.
INTEGRATION_WORKERS ?= 2
integration: venv collection system-deps ## modules, event sources and roles against the sandbox and real local parts
	$(BIN)/pytest tests/integration $(if $(filter 0,$(INTEGRATION_WORKERS)),,-n $(INTEGRATION_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# End-to-end tests run the same way (E2E_WORKERS), except those marked `alone`: they assert how long healing takes,
# so they run afterwards, one at a time, with the machine to themselves. A phase that PYTEST_ARGS narrowed to no test
# is fine; without PYTEST_ARGS both phases must run tests.
E2E_WORKERS ?= 2
e2e: venv collection system-deps ## ansible-rulebook end to end
	@set -e; for phase in "not alone" "alone"; do \
		workers=$$([ "$$phase" = alone ] || echo "$(E2E_WORKERS)"); \
		echo ">> pytest tests/e2e -m '$$phase'"; \
		rc=0; $(BIN)/pytest tests/e2e -m "$$phase" $$([ -n "$$workers" ] && [ "$$workers" != 0 ] && echo "-n $$workers --dist loadfile") $(PYTEST_ARGS) || rc=$$?; \
		if [ $$rc = 5 ] && [ -n "$(strip $(PYTEST_ARGS))" ]; then rc=0; fi; \
		[ $$rc = 0 ] || exit $$rc; \
	done

# The role scenarios in extensions/molecule (molecule finds them from the collection root): default driver,
# local connection, no container engine, offline. One `molecule test -s` per scenario, so that every scenario runs
# (and cleans up) even when an earlier one fails; MOLECULE_JOBS of them at a time (each has its own estate and ports),
# each one's output kept in build/molecule/ and shown whole, in order. MOLECULE_SCENARIOS="process_restart" narrows it.
MOLECULE_SCENARIOS ?= $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard extensions/molecule/*/molecule.yml)))))
MOLECULE_JOBS ?= 2
molecule: venv collection system-deps ## molecule test of every role scenario (extensions/molecule), offline
	@rm -rf build/molecule && mkdir -p build/molecule; \
	printf '%s\n' $(MOLECULE_SCENARIOS) | xargs -P $(MOLECULE_JOBS) -I{} sh -c \
		'NO_COLOR=1 $(BIN)/molecule test -s {} > build/molecule/{}.log 2>&1; echo $$? > build/molecule/{}.rc'; \
	failed=""; for scenario in $(MOLECULE_SCENARIOS); do \
		echo ">> molecule test -s $$scenario"; cat build/molecule/$$scenario.log; \
		[ "$$(cat build/molecule/$$scenario.rc 2>/dev/null)" = 0 ] || failed="$$failed $$scenario"; \
	done; \
	if [ -n "$$failed" ]; then echo "molecule: failed scenarios:$$failed"; exit 1; fi

test: lint sanity units integration e2e molecule ## everything CI checks

# Building needs ansible-core only (no dev venv): the venv's ansible-galaxy when there is one, else the one on PATH.
ANSIBLE_GALAXY ?= $(or $(wildcard $(BIN)/ansible-galaxy),$(shell command -v ansible-galaxy 2>/dev/null))
BUILD_OUTPUT ?= build
build: ## build the collection tarball into build/ (needs only ansible-core: pip install ansible-core, or make venv)
	@test -n "$(ANSIBLE_GALAXY)" || { echo "make build needs ansible-galaxy: pip install ansible-core (or make venv)" >&2; exit 1; }
	@mkdir -p $(BUILD_OUTPUT)
	$(ANSIBLE_GALAXY) collection build --force --output-path $(BUILD_OUTPUT)/ .

demo: venv collection system-deps ## run the self-healing scenarios end to end on 127.0.0.1
	$(BIN)/python demo/run_demo.py

bench: venv collection ## benchmarks (not in CI); writes bench/results and BENCHMARKS.md figures
	@for script in bench/bench_*.py; do echo ">> $$script"; $(BIN)/python $$script || exit 1; done

docs: venv collection ## regenerate docs/reference from the modules', roles' and event sources' documentation
	$(BIN)/python tools/docs_reference.py

clean: ## remove build outputs (keeps .venv)
	rm -rf build tests/output .pytest_cache .ansible
