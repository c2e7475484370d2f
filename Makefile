# Two entry points for a fresh clone (see README.md):
#   make repro   set everything up, run the pipeline on the default params, print test accuracy
#   make test    set everything up, check lint and types, build the docs, run the test suite
VENV := .venv
PYTHON := $(VENV)/bin/python
# dvc runs each stage's `python ...` through the shell: put the venv first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The offline page template for `dvc plots show` (.dvc/config: plots.html_template).
PLOTS_PAGE := .dvc/plots/offline.html

.PHONY: setup system-packages repro lint docs test clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PYTHON) -m imgclf.reporting.plots_page $(PLOTS_PAGE)
	touch $@

repro: setup
	dvc repro
	imgclf summary

# Debian packages that some tests need, installed where this runs as root with apt-get: Chromium
# (the dvc plots page opened in a real browser), Graphviz (logs/architecture.png), zsh (the
# README's command lines run in zsh as well as bash) and PostgreSQL (a study of `imgclf tune` shared
# by two workers). Elsewhere those tests skip and say why.
SYSTEM_PACKAGES := chromium graphviz zsh postgresql
system-packages:
	@if command -v chromium >/dev/null && command -v dot >/dev/null && command -v zsh >/dev/null \
		&& ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; }; \
	else echo "note: install $(SYSTEM_PACKAGES) (Debian/Ubuntu: apt-get install $(SYSTEM_PACKAGES)) for the browser test, the architecture diagram, the zsh test and the shared study"; fi

# ruff (style, imports, likely bugs) and mypy (the type hints), configured in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The manual (docs/, mkdocs.yml) into build/site; --strict: a broken link or anchor is an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Two processes, each running whole test files (--dist loadfile keeps a module's shared fixtures and
# its tests' order), the longest files first (tests/conftest.py; --no-loadscope-reorder keeps that
# order): 600 tests in 19.2 minutes on 2 cores of an AMD EPYC with AVX-512 BF16 (2026-12-07, late), 15.6
# on such a host that evening, 23.2 on an AMD EPYC with AVX2 only that day: the host moves it most
# (docs/development.md). Two processes keep both cores busy; three took 19.6 minutes the same hour.
test: setup system-packages lint docs
	$(PYTHON) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

clean:
	rm -rf $(VENV) dvc_plots
