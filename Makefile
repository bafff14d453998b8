# Hoist: every task a developer, CI or a first-time user runs.
# `make test` and `make demo` set everything up first, so each is one command on a fresh
# Debian 12 machine.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml tools/system-deps.sh tools/kubebin.py | cksum | cut -d' ' -f1)
# Real Keystone and Glance (the OpenStack simulator) pin libraries Hoist must not share: own venv.
OS_VENV  ?= .venv-openstack
OS_STAMP := $(OS_VENV)/.installed-$(shell cksum < sim/openstack/requirements.txt | cut -d' ' -f1)
# What `make image` tags the built image as (besides its content key).
IMAGE_TAG ?= localhost/hoist:0.1.0

.PHONY: setup guests image test lint demo bench clean help

help:
	@echo "make setup   install system packages (Debian), create $(VENV), install Hoist"
	@echo "make guests  build the real Debian guests once (cached; docs/guests.md; needs root)"
	@echo "make image   build the Hoist image from the Containerfile with buildah (cached;"
	@echo "             docs/image.md; needs root; a local Debian base when no registry answers)"
	@echo "make test    run the test suite against real NATS and PostgreSQL servers"
	@echo "make lint    ruff, mypy and the import contract"
	@echo "make demo    migrate the demo's oVirt and OpenStack VMs into KubeVirt through the"
	@echo "             hoist CLI, check every disk byte for byte, write demo-report.json"
	@echo "             (SCENARIO=path.yaml: another scenario, docs/demo.md; DEMO_ARGS=--keep;"
	@echo "             IMAGE=localhost/hoist:0.1.0: populator pods run in the built image)"
	@echo "make bench   run every benchmark under bench/ and print a table"

setup: $(STAMP) $(OS_STAMP)

$(STAMP): pyproject.toml tools/system-deps.sh tools/kubebin.py
	sh tools/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,sim]"
	$(PY) -m tools.kubebin
	rm -f $(VENV)/.installed-*
	touch $@

$(OS_STAMP): sim/openstack/requirements.txt
	test -x $(OS_VENV)/bin/python || $(PYTHON) -m venv $(OS_VENV)
	$(OS_VENV)/bin/python -m pip install --quiet -r sim/openstack/requirements.txt
	rm -f $(OS_VENV)/.installed-*
	touch $@

# The real guests a test migrates and boots: built once per recipe, cached outside the tree.
guests: setup
	$(PY) -m tools.guestimage build

# The one Hoist image, from the Containerfile (buildah; cached by content like the guests).
image: setup
	$(PY) -m tools.containerimage build --tag $(IMAGE_TAG)

# The image too: tests/image run it, and its cold build (minutes) is paid here, as the
# guests' is, not inside the suite's time.
test: setup guests image
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services sim tools bench tests cli
	$(VENV)/bin/lint-imports

demo: setup
	$(PY) -m tools.demo $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(IMAGE),--image $(IMAGE)) $(DEMO_ARGS)

bench: setup
	$(PY) -m tools.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(OS_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
