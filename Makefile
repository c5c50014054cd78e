# `make test` does the whole set-up on a fresh clone (virtualenv, pinned torch, the project in
# editable mode with its test extras) and runs the test suite. Set-up reruns only when
# pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
# The original LLaVA codebase; its own pins (torch 2.0, transformers 4.36) conflict with ours, so no deps.
LLAVA_REQUIREMENT := llava-torch==1.2.2.post1
STAMP := $(VENV)/.installed
# The toy LLaVA's parts (files inside PyPI packages, pinned with hashes in requirements-toy.txt).
TOY_PARTS := $(VENV)/toy-parts

.PHONY: test demo reproduce setup clean

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# A smoke test: every method and budget on one image, what reached the LLM, the answer. Default: the
# toy LLaVA (trained on easy-VQA) on an easy-VQA test image and its question, the data's answer beside
# each row (CPU, about a minute); ARGS="--model DIR_OR_ID --image FILE --question TEXT" for others.
demo: $(STAMP)
	$(VENV)/bin/python -m llava_patch.cli demo $(ARGS)

# The main job: the evaluation sweep (every method at 0/75/90/95%, and the questions without their image)
# with its table (95% bootstrap intervals) and retention figure. Without CKPT/DATA: the toy LLaVA on a
# sample of easy-VQA's test split, on CPU (runs/reproduce/toy); with CKPT=... DATA=...: POPE and GQA.
reproduce: $(STAMP)
	$(VENV)/bin/python -m llava_patch.cli reproduce $(ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile requirements-toy.txt requirements-vocab.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing pulls a different build.
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	$(VENV)/bin/python -m pip install --quiet --no-deps $(LLAVA_REQUIREMENT)
	# lmms-eval (the plugin in llava_patch/eval/harness.py): without its deps (they pull torchvision), plus what it imports.
	$(VENV)/bin/python -m pip install --quiet --no-deps lmms-eval==0.7.3
	$(VENV)/bin/python -m pip install --quiet loguru==0.7.3 sacrebleu==2.6.0 evaluate==0.4.6 pytz==2026.6 tenacity==9.2.1 pytablewriter==1.2.1 decord==0.6.0 filelock==3.32.7
	# The toy model's parts and the sample photos: files only, beside the virtualenv, never imported.
	rm -rf $(TOY_PARTS)
	$(VENV)/bin/python -m pip install --quiet --no-deps --require-hashes --target $(TOY_PARTS) -r requirements-toy.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --target $(TOY_PARTS) scikit-image==0.26.0
	# LLaMA's vocabulary (one 0.7 MB file of the llama-cpp-python sdist, which is never built), for the
	# tests that check prompt token positions against the real tokenizer.
	rm -rf $(VENV)/downloads
	$(VENV)/bin/python -m pip download --quiet --no-deps --no-binary :all: --require-hashes -r requirements-vocab.txt -d $(VENV)/downloads
	tar xzf $(VENV)/downloads/llama_cpp_python-0.3.16.tar.gz -C $(TOY_PARTS) --strip-components=4 llama_cpp_python-0.3.16/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
	rm -rf $(VENV)/downloads
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
