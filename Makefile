# kos — the two commands that matter are at the top.
#   make demo   one-machine cluster + a driver run + a report (the main job)
#   make test   everything CI runs: lint, types, layers, unit, contract, integration and system tests
#   make demo-ovs   (root) the main job on a real Open vSwitch datapath: simulated hosts, real agents, ping tests

# The interpreter .venv is built with: Debian's CPython 3.11 when it is there (built with PGO and LTO, it ran
# kos's API server benchmark 1.2x and a saturated cluster 1.05x faster than a plain source build of 3.11;
# docs/performance.md, "Interpreter"), else any python3 >= 3.11. Override with `make PYTHON=...`.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 && echo /usr/bin/python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-ovs test lint typecheck layers unit system-deps clean bench image

demo: $(STAMP)
	$(VENV)/bin/kos demo

# `kos demo --fabric ovs`: needs root and the OVS tools (installed by system-deps). HOSTS, ATTACHMENTS and
# RATE override its workload (defaults: 3 hosts, 300 attachments at 10 operations/s).
HOSTS       ?= 3
ATTACHMENTS ?= 300
RATE        ?= 10
demo-ovs: $(STAMP) system-deps
	@if [ "$$(id -u)" != 0 ]; then echo "make demo-ovs: run it as root (network namespaces, taps, the OVS daemons)" >&2; exit 2; fi
	$(VENV)/bin/kos demo --fabric ovs --hosts $(HOSTS) --num-attachments $(ATTACHMENTS) --rate $(RATE)

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

# The one image (Containerfile) for every component, tagged with the version (from the git tag, as the
# package's: setuptools-scm; `+` becomes `-` in the tag), built by podman, buildah or docker, whichever works here.
IMAGE        ?= localhost/kos
IMAGE_SOURCE ?= unknown
image: $(STAMP)
	@version=$$($(PY) -m setuptools_scm 2>/dev/null) || { echo "make image: cannot tell the version: not a git checkout?" >&2; exit 2; }; \
	commit=$$(git rev-parse HEAD); tag=$$(echo "$$version" | tr '+' '-'); \
	if command -v podman >/dev/null; then engine="podman build"; \
	elif command -v buildah >/dev/null; then engine="buildah build"; \
	elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine="docker build"; \
	else echo "make image: no container engine here (podman, buildah, or docker with a running daemon): nothing built." \
	          "Install one (apt-get install podman) and run it again." >&2; exit 1; fi; \
	echo "make image: $(IMAGE):$$tag (kos $$version, commit $$commit) with $$engine"; \
	$$engine -f Containerfile --build-arg KOS_VERSION="$$version" --build-arg KOS_COMMIT="$$commit" \
	  --build-arg KOS_SOURCE="$(IMAGE_SOURCE)" -t "$(IMAGE):$$tag" .

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
