# The two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Lambda functions run on arm64 (Graviton: cheaper per GB-second) with Python 3.12.
LAMBDA_PLATFORMS := --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64
WHEELHOUSE := build/wheelhouse
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test bench synth clean wheelhouse

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	# An editable install is not byte-compiled; compile it as pip does a regular install, so
	# the CLI does not recompile itself at every start where PYTHONDONTWRITEBYTECODE is set.
	$(PY) -m compileall -q lambdas/fashion_pipeline tools/fashion_pipeline_tools
	touch $@

# Third-party wheels for the Lambda platform, fetched once; synthesis bundles from here offline.
$(WHEELHOUSE)/.done: lambdas/requirements.txt lambdas/inference/requirements.txt lambdas/evaluation_report/requirements.txt $(VENV)/.installed
	mkdir -p $(WHEELHOUSE)
	$(PY) -m pip download --quiet --dest $(WHEELHOUSE) --only-binary=:all: \
		--python-version 3.12 --implementation cp $(LAMBDA_PLATFORMS) -r lambdas/requirements.txt -r lambdas/inference/requirements.txt -r lambdas/evaluation_report/requirements.txt
	touch $@

# Two workers (pytest-xdist), one per core of the CI machine: each synthesizes the stack once
# for its session; the suite takes about half the time it takes serially.
test: $(VENV)/.installed $(WHEELHOUSE)/.done
	$(PY) -m pytest -n 2

demo: $(VENV)/.installed $(WHEELHOUSE)/.done
	$(PY) -m fashion_pipeline_tools.demo

bench: $(VENV)/.installed
	$(PY) bench/run.py

synth: $(VENV)/.installed $(WHEELHOUSE)/.done
	$(PY) app.py

clean:
	rm -rf build cdk.out demo-output .pytest_cache

wheelhouse: $(WHEELHOUSE)/.done
