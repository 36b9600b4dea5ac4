# The two commands of the README. Both create and use .venv with pip.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e .
	touch $@

# recbole only for the MovieLens 100k files it ships (read, never imported), gan-face-generate
# only for the DCGAN face generator's weights it ships (read with weights_only=True): both
# without their dependencies, which the files do not need (DESIGN §12)
$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps 'recbole==1.2.1' 'gan-face-generate==1.1.1'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/latentspace demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

bench: $(VENV)/.installed-test
	$(PIP) install -q -e '.[bench]'
	$(PY) bench/search.py

clean:
	rm -rf $(VENV) demo-store .pytest_cache .hypothesis
