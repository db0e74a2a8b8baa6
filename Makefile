# spatialpath developer commands. `make demo` and `make test` build .venv/ from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-output
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# extras the test suite exercises (napari comes with its own GUI test setup)
EXTRAS := dev,mcd

.PHONY: install demo test lint format constraints bench clean help

help:
	@echo "make demo    run the main job on the embedded simulated cohort -> $(OUT)/"
	@echo "make test    ruff lint + format check + the whole test suite (with --durations=20)"
	@echo "make install create .venv/ with pinned versions (constraints.txt); done by demo and test"
	@echo "make format  apply ruff fixes and formatting"
	@echo "make constraints  re-resolve constraints.txt on Python 3.11 after changing pyproject.toml"

# Idempotent: re-runs only when pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; assert v >= (3, 11), f"spatialpath needs Python >= 3.11, found {v}"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --progress-bar off -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/spatialpath demo --out "$(OUT)" --overwrite

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	MPLBACKEND=Agg $(BIN)/python -m pytest --durations=20 $(PYTEST_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Resolve every dependency afresh in a throw-away venv and pin the result.
constraints:
	rm -rf .venv-resolve && $(PYTHON) -m venv .venv-resolve
	.venv-resolve/bin/python -m pip install --quiet -e ".[$(EXTRAS)]"
	{ echo "# Pinned versions for spatialpath, resolved on Python 3.11 (Linux x86_64)."; \
	  echo "# Used by 'make install' as pip constraints so every machine resolves the same versions."; \
	  echo "# Regenerate with 'make constraints' after changing dependencies in pyproject.toml."; \
	  .venv-resolve/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .venv-resolve

bench: install
	cd benchmarks && for b in bench_*.py; do echo "== $$b"; ../$(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
