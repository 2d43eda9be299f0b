# Slipway developer entry points. Every target that runs code bootstraps first, so a fresh
# Debian 12 machine needs nothing but `make demo` (as root).
PY       := .venv/bin/python
PACKAGES := workflows activities lanes catalogue integrations schemas starter
# The product, its tests and benches (alembic's revisions are excluded in pyproject.toml).
LINT_PATHS := $(PACKAGES) worker.py agent.py tests bench

.PHONY: help bootstrap demo test bench lint up down

help:
	@echo "make demo       bootstrap, then run the end-to-end demo (python -m starter demo)"
	@echo "make test       bootstrap (+ Kubernetes server binaries), then unit + integration tests"
	@echo "make bench      bootstrap, then every benchmark (bench/run_all.py, ~20 min)"
	@echo "make lint       ruff check + mypy"
	@echo "make up | down  start / stop the embedded stack (Temporal dev server, worker, server)"

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m starter demo

# The tests also run a Kubernetes control plane: its binaries are built once (~6 min) and cached.
test:
	bash scripts/bootstrap.sh --kubernetes
	bash scripts/test.sh

bench: bootstrap
	$(PY) -m bench.run_all

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy $(LINT_PATHS)
	.venv/bin/lint-imports

up:
	$(PY) -m starter up

down:
	$(PY) -m starter down
