# labledger developer tasks. `make run` and `make test` are the README's quick start.
SHELL := /bin/bash
UV ?= uv
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
CODE := src tests $(wildcard bench)
# The fast subset: unit and contract suites on SQLite only (PostgreSQL's cases skip), two test
# files at a time: under 2 minutes on 2 cores.
FAST := tests/unit tests/contract -m "not postgres and not slow and not bench and not package" \
	-n 2 --dist loadfile

.PHONY: setup install run test test-fast test-package lint format bench bench-smoke reliability screenshots browser-tools

setup:
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv==0.13.9"
	$(UV) sync --frozen --all-groups

# The `labledger` command on PATH (~/.local/bin): the runtime dependencies only, at the
# versions uv.lock pins, compiled to bytecode at install so that no command pays for it later.
install:
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv==0.13.9"
	pins=$$(mktemp) && $(UV) export --frozen --no-default-groups --no-emit-project --no-hashes \
		--quiet --output-file "$$pins" && $(UV) tool install --force --compile-bytecode --constraints "$$pins" . ; \
		status=$$?; rm -f "$$pins"; exit $$status
	@command -v labledger >/dev/null || echo "add $$($(UV) tool dir --bin) to PATH"

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

# axe-core for the browser tests (they skip without Chromium, except in CI).
browser-tools:
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent; fi

# The whole suite on SQLite and PostgreSQL, two test files at a time (pytest-xdist; each test
# has its own temporary folder, database and ports): under 6 minutes on 2 idle cores. The long
# reliability scenarios, the wheel and the benchmarks have targets of their own.
test: setup lint browser-tools
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL:-$(PG_TEST_URL)} $(UV) run pytest \
		-m "not bench and not package and not reliability" -n 2 --dist loadfile

test-fast: setup
	env -u LABLEDGER_TEST_PG_URL CI= $(UV) run pytest $(FAST)

# uv sees pyenv's interpreters only where pyenv's shims resolve them; else pyenv's own folder.
python-of = $(shell $(UV) python find $(1) 2>/dev/null || \
	ls -d $$(pyenv root 2>/dev/null)/versions/$(1)*/bin/python$(1) 2>/dev/null | tail -n 1)

# The fast subset on another Python in its own environment, e.g. `make test-on-3.13`.
test-on-%:
	UV_PROJECT_ENVIRONMENT=.venv-$* $(UV) sync --frozen --python "$(call python-of,$*)" --group test
	env -u LABLEDGER_TEST_PG_URL CI= UV_PROJECT_ENVIRONMENT=.venv-$* \
		$(UV) run --frozen --no-sync --python "$(call python-of,$*)" pytest -p no:cacheprovider $(FAST)

# The wheel from `uv build`, installed alone into a fresh virtualenv (needs PyPI or uv's cache).
test-package: setup
	$(UV) run pytest -m package tests/integration/test_wheel.py

bench: setup
	$(UV) run python -m bench full

# The benchmark suite at tiny sizes, checked end to end (kept out of `make test` for time).
bench-smoke: setup
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL:-$(PG_TEST_URL)} $(UV) run pytest -m bench tests/integration/test_bench_smoke.py

reliability: setup
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL:-$(PG_TEST_URL)} $(UV) run python -m tests.reliability.report

screenshots: setup browser-tools
	$(UV) run python -m tests.browser.screenshots docs/ui
