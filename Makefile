# kos — the two commands that matter are at the top.
#   make demo   one-machine cluster + a driver run + a report (the main job)
#   make test   everything CI runs: lint, types, layers, unit, contract, integration and system tests

# The interpreter .venv is built with: Debian's CPython 3.11 when it is there (built with PGO and LTO, it ran
# kos's API server benchmark 1.2x and a saturated cluster 1.05x faster than a plain source build of 3.11;
# docs/performance.md, "Interpreter"), else any python3 >= 3.11. Override with `make PYTHON=...`.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 && echo /usr/bin/python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck layers unit system-deps clean bench

demo: $(STAMP)
	$(VENV)/bin/kos demo

test: $(STAMP) system-deps lint typecheck layers
	$(VENV)/bin/pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(VENV)/bin/vulture

typecheck: $(STAMP)
	$(VENV)/bin/mypy

layers: $(STAMP)
	$(VENV)/bin/lint-imports

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the system tests use; installed only when running as root and missing.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  need=""; \
	  command -v etcd >/dev/null || need="$$need etcd-server"; \
	  command -v kubectl >/dev/null || need="$$need kubernetes-client"; \
	  command -v ovs-vswitchd >/dev/null || need="$$need openvswitch-switch"; \
	  command -v ip >/dev/null || need="$$need iproute2"; \
	  command -v ping >/dev/null || need="$$need iputils-ping"; \
	  command -v nft >/dev/null || need="$$need nftables"; \
	  command -v prometheus >/dev/null || need="$$need prometheus"; \
	  if [ -n "$$need" ]; then \
	    echo "installing Debian packages:$$need"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages (tests that need them will say so)"; fi

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
