# The two commands a newcomer needs: `make demo` and `make test`. Both run the idempotent set-up:
# the demo only what it needs (core packages, no apt), the tests everything (extras, JACK,
# mosquitto, chromium, Xvfb, the training tools).
VENV := .venv
BIN := $(VENV)/bin
export PYO_GUI_WX := 0

.PHONY: setup setup-demo demo test lint bench clean

setup:
	@tools/setup.sh test

setup-demo:
	@tools/setup.sh demo

demo: setup-demo
	@$(BIN)/moodscore run --source demo --duration 60 --record out/

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: setup
	@$(BIN)/ruff check -q daemon models tools tests
	@$(BIN)/ruff format -q --check daemon models tools tests
	@$(BIN)/mypy
	@out=$$($(BIN)/lint-imports --no-cache 2>&1) || { echo "$$out"; exit 1; }

bench: setup
	$(BIN)/moodscore bench

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
