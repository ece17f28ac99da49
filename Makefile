# Two commands for a fresh machine:  `make demo`  (the end-to-end job)  and  `make test`.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean lambda-zip stack-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/wikichurn demo

# Everything, slow end-to-end tests and the JVM Spark compatibility lane included.
test: $(STAMP)
	$(BIN)/pytest

# The quick inner loop: skips the slow end-to-end tests and the JVM lane.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not jvm"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts deploy
	$(BIN)/ruff format --check src tests benchmarks scripts deploy

# The AWS Lambda deployment zip of the ingestion handler (deploy/lambda/template.yaml deploys it).
lambda-zip: $(STAMP)
	$(BIN)/python deploy/lambda/package.py

# docker compose up for real on a Docker engine (started by hand if needed), checked end to end.
stack-test: $(STAMP)
	scripts/stack-test

clean:
	rm -rf data/demo .pytest_cache
