# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing and (re)installs only when a pyproject.toml,
# requirements-dev.txt or constraints.txt changed since the last install.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deepseek-installed
PLUGINS := plugins/medical plugins/manufacturing plugins/finance
DISTS  := core $(PLUGINS)
INPUTS := pyproject.toml $(addsuffix /pyproject.toml,$(DISTS)) requirements-dev.txt constraints.txt
PYTEST_ARGS ?=

.PHONY: demo test install lint docs bench bench-peers clean image image-base image-tag

demo: $(STAMP)
	$(VENV)/bin/deepseek demo

# the tests run in one worker process per core (pytest-xdist); work-stealing keeps both busy
test: $(STAMP)
	$(PY) -m pytest -n auto --dist worksteal $(PYTEST_ARGS)

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"

$(STAMP): $(PY) $(INPUTS)
	@echo "installing the four distributions (editable) and the test tools into $(VENV)"
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt \
		-e "./core[serve,onnx,tune,zoo,ray]" $(foreach d,$(PLUGINS),-e "./$(d)[full,edge]")
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check core plugins tests benchmarks deploy docs/_tools

# The documentation site (mkdocs.yml) into site/, strict: a broken link or reference, a
# docstring the API reference cannot read, or a tutorial cell that raises fails the build.
DOCS_STAMP := $(VENV)/.deepseek-docs-installed
$(DOCS_STAMP): $(STAMP) requirements-docs.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-docs.txt
	@touch $@

# the tutorials write their examples under tempfile's folder: a folder of the build's own,
# removed after it whatever the build's outcome, so that builds leave nothing in /tmp
docs: $(DOCS_STAMP)
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/deepseek-docs.XXXXXX") && \
	  TMPDIR="$$tmp" NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict; \
	  rc=$$?; rm -rf "$$tmp"; exit $$rc

# The peers of benchmarks/serving.py (MLServer, KServe) in an environment of their own: they
# are never dependencies of the package. uvloop<0.22: MLServer 1.7's inference workers fail
# to start with uvloop 0.22 (SeldonIO/MLServer#2286).
# hftbacktest, the peer of benchmarks/backtest.py, gets its own (numpy/numba pins of its own).
bench-peers:
	$(PYTHON) -m venv .bench-peers
	.bench-peers/bin/python -m pip install --quiet -c constraints.txt torch==2.13.0 \
		"mlserver>=1.6" "kserve>=0.14" "uvloop<0.22"
	$(PYTHON) -m venv .bench-hftbacktest
	.bench-hftbacktest/bin/python -m pip install --quiet "hftbacktest>=2.4,<3"

bench: $(STAMP)
	@for b in $(wildcard benchmarks/*.py); do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .bench-peers .bench-hftbacktest dist build .pytest_cache site

# The model server image (Dockerfile): the edge form by default, TARGET=full adds PyTorch and
# the verticals. The base is made offline from Debian's packages (mmdebstrap, podman import);
# with Docker, build with --build-arg BASE=python:3.11-slim instead.
IMAGE  ?= deepseek/framework
TARGET ?= edge
BASE   ?= deepseek/base:bookworm
PIP_ARGS ?=
# e.g. behind a TLS-intercepting proxy: PODMAN_ARGS="-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro"
# PIP_ARGS="--cert /etc/ssl/certs/host-ca.crt"; a local wheel folder: -v /opt/wheels:/opt/wheels:ro
# and PIP_ARGS="--find-links /opt/wheels"
PODMAN_ARGS ?=
TORCH ?= torch
EDGE ?= edge
# one tag scheme for `make image`, the manifests in deploy/ and docs/serving.md:
# deepseek/framework:<version>-<form>, the form edge, edge-all (EDGE=edge-all) or full
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' core/src/deepseek/__init__.py)
TAG ?= $(VERSION)-$(if $(filter edge,$(TARGET)),$(EDGE),$(TARGET))
image-tag:
	@echo $(IMAGE):$(TAG)

# minbase with python3; /usr merged by mmdebstrap's hook (the usrmerge package would pull in
# perl), manual pages, info, translations and documentation left out (copyright files kept)
image-base:
	mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-include=/usr/share/locale/locale.alias' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		bookworm - | podman import - $(BASE)

# the base is pinned by digest (the one podman holds for $(BASE))
image:
	podman image exists $(BASE) || $(MAKE) image-base
	podman build --isolation chroot --format docker --target $(TARGET) \
		--build-arg BASE=$(BASE)@$$(podman image inspect --format '{{.Digest}}' $(BASE)) \
		--build-arg PIP_ARGS="$(PIP_ARGS)" --build-arg TORCH="$(TORCH)" \
		--build-arg EDGE="$(EDGE)" $(PODMAN_ARGS) \
		-t $(IMAGE):$(TAG) .
