# Two entry points for a fresh Debian machine: `make demo` and `make test`.
# Both create their own virtual environment and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Tools that live outside PyPI (Debian packages), installed once per machine.
APT_PACKAGES := prometheus gcc chromium chromium-driver containerd runc containernetworking-plugins iptables \
  victoria-metrics
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint typecheck unit apt-deps kube-apiserver kube-node venv clean fuzz docs image

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[agent,collector,test]'
	touch $@

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(VENV)/bin/kubecarbon demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check agent collector kubecarbon tests bench dashboards deploy
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy agent collector kubecarbon dashboards/generate.py deploy/render.py deploy/build_images.py

# etcd-server (apt) and a kube-apiserver built once from Debian's `kubernetes`
# sources, cached in /var/cache/kubecarbon (4 minutes on 2 idle cores, the first time).
kube-apiserver:
	tests/k8s/build-apiserver.sh >/dev/null

# The API server and a node for tests/cluster (kubelet, kube-proxy, scheduler,
# controller-manager, the pause process), built together: about 8 minutes the first time.
kube-node:
	tests/k8s/build-kubernetes.sh kube-apiserver kubelet kube-proxy kube-scheduler \
	  kube-controller-manager pause >/dev/null

# tests/cluster runs the images on its node: built (warm: seconds) before the tests.
unit: $(STAMP) apt-deps kube-node image
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

# kubecarbon and kubecarbon-agent images from deploy/Dockerfile with podman, saved for
# `ctr images import` under /var/cache/kubecarbon/images (deploy/build_images.py).
image:
	$(PYTHON) deploy/build_images.py $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

# The hostile-input fuzz run at full size; `make test` runs the same test with 500 payloads.
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	KUBECARBON_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/scale/test_fuzz_ingest.py \
	  -q -s -p no:cacheprovider --timeout=3600

# Regenerate the files made from code (tests fail when they are stale).
docs: $(STAMP)
	$(PY) -m collector.metrics > docs/metrics.md
	$(PY) -m agent.metrics >> docs/metrics.md
	$(PY) -m collector.kubernetes.metrics_doc docs/kubernetes.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
