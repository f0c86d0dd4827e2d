# Two commands on a fresh machine: `make demo` (install, then the whole pipeline offline)
# and `make test` (install, then the test suite). Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the browser tests' Chromium comes from the system's packages (Playwright never downloads one):
# only `make test` needs it; apt-get as root (CI), else through sudo
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test browser bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,fcpe,ui,eval,fast]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/diffsvc demo

browser:
	test -x $(CHROMIUM) || $(SUDO) env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update -qq && apt-get install -y -qq chromium'

test: $(STAMP) browser
	DIFFSVC_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/sampler.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/preprocess.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/infer.py
	$(PY) benchmarks/distill.py

clean:
	rm -rf $(VENV) build *.egg-info
