# labledger developer tasks. `make run` and `make test` are the README's quick start.
SHELL := /bin/bash
UV ?= uv
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
CODE := src tests $(wildcard bench)

.PHONY: setup run test lint format bench bench-smoke reliability screenshots

setup:
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv==0.13.9"
	$(UV) sync --frozen --all-groups

run: setup
	$(UV) run labledger migrate
	$(UV) run labledger keys init --exist-ok
	$(UV) run labledger serve

lint: setup
	$(UV) run ruff check $(CODE)
	$(UV) run ruff format --check $(CODE)
	$(UV) run mypy

format: setup
	$(UV) run ruff format $(CODE)
	$(UV) run ruff check --fix $(CODE)

test: setup lint
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL:-$(PG_TEST_URL)} $(UV) run pytest

bench: setup
	$(UV) run python -m bench full

bench-smoke: setup
	$(UV) run python -m bench smoke

reliability: setup
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL:-$(PG_TEST_URL)} $(UV) run python -m tests.reliability.report

screenshots: setup
	npm ci --no-audit --no-fund
	$(UV) run python -m tests.browser.screenshots docs/ui
