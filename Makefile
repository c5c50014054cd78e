# `make test` does the whole set-up on a fresh clone (virtualenv, pinned torch, the project in
# editable mode with its test extras) and runs the test suite. Set-up reruns only when
# pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test demo setup clean

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The main job: every method and budget on one image (ARGS="--model DIR_OR_ID --image FILE").
demo: $(STAMP)
	$(VENV)/bin/python -m llava_patch.demo $(ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing pulls a different build.
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
