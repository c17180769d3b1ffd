# Two set-up commands: `make demo` and `make test`; both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-quality lint typecheck pytest conform-nightly clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[batquant,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mxref.demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check mxref batquant spec_tests tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The spec battery with the "nightly" hypothesis profile (2000 randomized examples per test).
conform-nightly: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider spec_tests --hypothesis-profile=nightly

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_codec.py && $(BIN)/python benchmarks/bench_gemm.py
	$(BIN)/python benchmarks/bench_mx_torch.py && $(BIN)/python benchmarks/bench_transforms.py

# Layer-level quality of every batquant method on LLM-like synthetic activations.
bench-quality: $(STAMP)
	$(BIN)/python benchmarks/bench_quality.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
