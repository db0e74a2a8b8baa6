# spatialpath developer commands. `make demo` and `make test` build .venv/ from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-output
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# extras the test suite exercises
EXTRAS := dev,mcd,napari,docs
# Debian packages of the napari GUI tests: Qt's xcb platform under Xvfb (docs/napari.md)
GUI_DEBS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libgl1 libegl1 libxkbcommon-x11-0 \
	libxcb-cursor0 libdbus-1-3 libfontconfig1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Notebooks run (reduced sizes: SPATIALPATH_NB_FAST=1) on copies in docs/notebooks/, where the
# documentation site renders them with their outputs: executed once, in the test run.
NB_DIR := docs/notebooks
# the GUI session has its own options: napari's pytest plugin on, only the plugin's tests
GUI_PYTEST := -o addopts="" -ra --strict-markers --import-mode=importlib --doctest-modules \
	--durations=10 tests/napari spatialpath/napari
NB_PYTEST := -p no:napari -p no:npe2 -o addopts="" -ra --nbmake --nbmake-timeout=300 --overwrite \
	--durations=10

.PHONY: install demo test test-notebooks test-gui gui-deps docs lint format constraints bench clean help

help:
	@echo "make demo    run the main job on the embedded simulated cohort -> $(OUT)/"
	@echo "make test    ruff lint + format check + the whole test suite (with --durations=20), GUI tests under Xvfb"
	@echo "make test-gui  only the napari plugin's tests, under Xvfb (installs its Debian packages if missing)"
	@echo "make install create .venv/ with pinned versions (constraints.txt); done by demo and test"
	@echo "make docs    build the documentation site (strict) -> site/, executing the notebooks if needed"
	@echo "make test-notebooks  execute notebooks 01-05 (reduced sizes) into docs/notebooks/"
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
	$(BIN)/spatialpath demo --out "$(OUT)" --overwrite --unblind

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	MPLBACKEND=Agg $(BIN)/python -m pytest --durations=20 $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-notebooks
	$(MAKE) --no-print-directory test-gui
	$(MAKE) --no-print-directory docs

# Notebooks 01-05 (06, the napari tour, runs in test-gui under Xvfb).
test-notebooks: install
	rm -rf $(NB_DIR) && mkdir -p $(NB_DIR)
	cp notebooks/*.ipynb $(NB_DIR)/
	SPATIALPATH_NB_FAST=1 MPLBACKEND=Agg $(BIN)/python -m pytest $(NB_PYTEST) \
	  $(filter-out $(NB_DIR)/06_napari_tour.ipynb,$(patsubst notebooks/%,$(NB_DIR)/%,$(wildcard notebooks/*.ipynb)))

# Install the GUI test packages when missing (apt-get update retried); with CI=true a failure stops make test.
gui-deps:
	@if command -v xvfb-run >/dev/null 2>&1 && dpkg -s $(GUI_DEBS) >/dev/null 2>&1; then exit 0; fi; \
	echo "installing the GUI test packages: $(GUI_DEBS)"; \
	for i in 1 2 3 4 5; do $(SUDO) apt-get update -qq && break; echo "apt-get update failed ($$i), retrying"; sleep 10; done; \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(GUI_DEBS) >/dev/null \
	|| { echo "could not install the GUI test packages"; [ "$$CI" != true ] || exit 1; }

# The napari tests need a real X server (Qt's offscreen platform crashes on image layers and
# gives black screenshots). With CI=true, skipped GUI tests fail the run (tests/napari/conftest.py).
test-gui: install gui-deps
	@if ! command -v xvfb-run >/dev/null 2>&1; then \
	  echo "xvfb-run is missing: the napari GUI tests did not run"; [ "$$CI" != true ] || exit 1; exit 0; fi
	QT_QPA_PLATFORM=xcb MPLBACKEND=Agg xvfb-run -a -s "-screen 0 1600x1200x24" \
	  $(BIN)/python -m pytest $(GUI_PYTEST) $(PYTEST_ARGS)
	@# the napari tour notebook under Xvfb, in a session without pytest-qt: its
	@# QT_API setting, inherited by the kernel, hangs ipykernel's Qt event loop
	@mkdir -p $(NB_DIR) && cp notebooks/06_napari_tour.ipynb $(NB_DIR)/
	env -u QT_API SPATIALPATH_NB_FAST=1 QT_QPA_PLATFORM=xcb MPLBACKEND=Agg \
	  xvfb-run -a -s "-screen 0 1600x1200x24" \
	  $(BIN)/python -m pytest $(NB_PYTEST) -p no:pytest-qt $(NB_DIR)/06_napari_tour.ipynb

# The documentation site in site/ (mkdocs.yml; strict: a broken link or reference fails).
docs: install
	@for nb in notebooks/*.ipynb; do test -f $(NB_DIR)/$$(basename $$nb) || { \
	  echo "docs: executing the notebooks first"; $(MAKE) --no-print-directory test-notebooks test-gui; break; }; done
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site/index.html"

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
