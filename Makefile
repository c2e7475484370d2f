# Two entry points for a fresh clone (see README.md):
#   make repro   set everything up, run the pipeline on the default params, print test accuracy
#   make test    set everything up, run the test suite
VENV := .venv
PYTHON := $(VENV)/bin/python
# dvc runs each stage's `python ...` through the shell: put the venv first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The offline page template for `dvc plots show` (.dvc/config: plots.html_template).
PLOTS_PAGE := .dvc/plots/offline.html

.PHONY: setup repro test clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PYTHON) -m imgclf.plots_page $(PLOTS_PAGE)
	touch $@

repro: setup
	dvc repro
	imgclf summary

test: setup
	$(PYTHON) -m pytest

clean:
	rm -rf $(VENV) dvc_plots
