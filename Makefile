# Toque — developer entry points. `make up` runs the local stack with the main example;
# `make test` runs lint and every test against a real local control plane.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: all venv tools node-deps image crds crds-check lint test test-unit test-e2e test-kind up down clean \
	bench bench-data bench-serve bench-drift lock actionlint lint-chart alerts dashboards

all: test

# constraints.txt pins every transitive version (regenerate with `make lock`): a fresh
# machine gets the set the tests ran with, and pip skips a long backtracking search.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

venv: $(STAMP)

tools:
	@bash hack/build-tools.sh

# Debian packages of the real node (containerd, runc, CNI plugins, nftables, the registry)
# and of the image build (buildah, podman, mmdebstrap); apt-get when missing.
node-deps:
	@bash hack/node-deps.sh

# Toque's image with buildah on a locally built Debian base, tagged by content (prints it).
image:
	@bash hack/build-image.sh

crds: venv
	$(PY) -m toque.api.crdgen crds helm/toque/crds

# The Grafana dashboards' JSON, which the chart ships (helm/toque/dashboards/), from the Python
# that builds them with grafana-foundation-sdk (dashboards/); a unit test fails when stale.
dashboards: venv
	$(PY) -m dashboards.build

# The GitHub workflow of the example and of `toque init`'s template, with actionlint built from
# its Go module (hack/build-actionlint.sh; cached, so a second run costs nothing).
actionlint:
	set -e; actionlint=$$(bash hack/build-actionlint.sh); $$actionlint examples/github/train.yml \
	  operator/toque/scaffold/template/project/.github/workflows/train.yml

# The Helm chart: helm lint, and the rendered manifests (every optional feature on) scanned by
# checkov, a Kubernetes security linter, in its own cached virtualenv (hack/lint-chart.sh).
lint-chart:
	@bash hack/lint-chart.sh

# The chart's PrometheusRule: promtool checks it and runs tests/alerts/ on it (synthetic
# series; no cluster, a few seconds once the tools are built: hack/check-alerts.sh).
alerts: venv
	@PYTHON=$(PY) bash hack/check-alerts.sh

lint: venv actionlint lint-chart alerts
	$(VENV)/bin/ruff check operator tests bench dashboards
	$(VENV)/bin/ruff format --check operator tests bench dashboards
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy dashboards
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit

test-e2e: venv tools node-deps
	TOQUE_TOOLS_BIN=$$(bash hack/build-tools.sh) $(VENV)/bin/pytest -q tests/e2e

# The README's test command: lint, then every unit and end-to-end test.
test: venv tools node-deps lint
	TOQUE_TOOLS_BIN=$$(bash hack/build-tools.sh) $(VENV)/bin/pytest -q -m "not kind" tests

# The main example end to end on a kind cluster (docs/kind.md): kind, built from its Go module,
# runs its node in Docker when an engine answers, else in podman (KIND_EXPERIMENTAL_PROVIDER),
# on a node image built here (hack/build-kind-node.sh: no outside registry is needed).
# Override with KIND_PROVIDER=docker|podman.
KIND_PROVIDER ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; fi)

test-kind: venv tools
	@if [ -z "$(KIND_PROVIDER)" ]; then \
	  echo "test-kind: neither a Docker engine ('docker info') nor podman here; nothing was tested."; \
	  exit 2; \
	fi
	$(PY) -m pip install -q -e '.[dev,kind]'
	set -e; tools=$$(bash hack/build-tools.sh | tail -n1); \
	kind=$$(bash hack/build-kind-node.sh kind | tail -n1); node=; image=; \
	if [ "$(KIND_PROVIDER)" = podman ]; then \
	  node=$$(bash hack/build-kind-node.sh | tail -n1); image=$$(bash hack/build-image.sh | tail -n1); \
	fi; \
	KIND_EXPERIMENTAL_PROVIDER=$(KIND_PROVIDER) TOQUE_TOOLS_BIN=$$tools TOQUE_KIND_BIN=$$kind \
	  TOQUE_KIND_NODE_IMAGE=$$node TOQUE_KIND_IMAGE=$$image $(VENV)/bin/pytest -q -s -m kind tests/kind

# Benchmarks write their results under bench/results/.
bench: bench-data bench-serve bench-drift

# dvc lives in its own virtualenv: its aiobotocore pins clash with our boto3.
$(VENV)-bench/bin/dvc:
	$(PYTHON) -m venv $(VENV)-bench
	$(VENV)-bench/bin/pip install -q 'dvc[s3]>=3.50'

bench-data: venv tools $(VENV)-bench/bin/dvc
	TOQUE_TOOLS_BIN=$$(bash hack/build-tools.sh) PATH="$(CURDIR)/$(VENV)-bench/bin:$$PATH" \
	  $(PY) bench/data_push.py --out bench/results/data-push.md

# MLServer (KServe's scikit-learn and MLflow runtimes) in its own virtualenv, with our
# scikit-learn and mlflow pins so it loads the very models the benchmark fitted; 1.7.1 does
# not start with uvloop 0.22. The stamp carries the pins, so changing one reinstalls.
MLSERVER := 1.7.1
SKLEARN_PIN := $(shell grep -i '^scikit-learn==' constraints.txt)
MLFLOW_PIN := $(shell grep -i '^mlflow==' constraints.txt)
MLSERVER_STAMP := $(VENV)-mlserver/.installed-$(MLSERVER)-$(subst ==,-,$(SKLEARN_PIN)-$(MLFLOW_PIN))
$(MLSERVER_STAMP):
	$(PYTHON) -m venv $(VENV)-mlserver
	$(VENV)-mlserver/bin/pip install -q 'mlserver==$(MLSERVER)' 'mlserver-sklearn==$(MLSERVER)' \
	  'mlserver-mlflow==$(MLSERVER)' 'uvloop<0.22' '$(SKLEARN_PIN)' '$(MLFLOW_PIN)'
	rm -f $(VENV)-mlserver/.installed-* && touch $@

# torch for the benchmark's MLP, as a plain folder (pip --target) that the benchmark puts on
# the MLP servers' PYTHONPATH: our virtualenv stays free of it. PyPI's Linux wheel is the
# CUDA build (about 5 GiB with its CUDA libraries, ~1.5 min here); it runs on the CPU. Its
# newer setuptools would shadow the virtualenvs' own, and torch needs it only to build: gone.
TORCH := 2.15.0
$(VENV)-torch/.installed-$(TORCH): | venv
	rm -rf $(VENV)-torch
	$(PY) -m pip install -q --target $(VENV)-torch -c constraints.txt 'torch==$(TORCH)'
	rm -rf $(VENV)-torch/setuptools* $(VENV)-torch/_distutils_hack $(VENV)-torch/distutils-precedence.pth
	touch $@

# `toque serve` vs `mlflow models serve` vs MLServer, five models, under wrk (installed from
# Debian when missing); 12-15 min here.
bench-serve: venv $(MLSERVER_STAMP) $(VENV)-torch/.installed-$(TORCH)
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(PY) bench/serve.py --out bench/results/serve.md $(BENCH_SERVE_ARGS)

# Evidently 0.7 needs pandas < 3 (0.7.23 fails to import under pandas 3), so it gets its own
# virtualenv too; the stamp carries the pin, so changing it reinstalls.
EVIDENTLY := 0.7.23
$(VENV)-evidently/.installed-$(EVIDENTLY):
	$(PYTHON) -m venv $(VENV)-evidently
	$(VENV)-evidently/bin/pip install -q 'evidently==$(EVIDENTLY)' 'pandas<3' pyarrow
	rm -f $(VENV)-evidently/.installed-* && touch $@

# `toque drift` vs Evidently's DataDriftPreset, each in its own process (3-4 min here).
bench-drift: venv $(VENV)-evidently/.installed-$(EVIDENTLY)
	$(PY) bench/drift.py --out bench/results/drift.md

up: venv tools node-deps
	TOQUE_TOOLS_BIN=$$(bash hack/build-tools.sh) $(VENV)/bin/toque-local up

down: venv
	$(VENV)/bin/toque-local down

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
