# The two front-door commands: `make demo` (whole pipeline on the local stack) and `make test`.
SHELL := /bin/bash
VENV := .venv
NMDOSE := $(VENV)/bin/nmdose
PYTEST_ARGS ?=

.PHONY: deps demo test lint format stop bench clean

deps:
	@bash scripts/install-deps.sh

demo: deps
	@bash scripts/demo.sh

stop:
	@$(NMDOSE) stack down

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# pytest's exit code 5 ("no tests collected") must fail, not pass silently.
test: lint
	@set +e; $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: deps
	@for b in bench/*.py; do echo "# $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	-$(NMDOSE) stack down
	rm -rf var .pytest_cache .ruff_cache
