# Every routine task. `make demo` and `make test` set up everything they need by themselves
# (scripts/bootstrap.sh: quick when already done).
SHELL := /bin/bash
ENV := source scripts/env.sh
PYTEST_ARGS ?=
# test files run on this many pytest-xdist workers (a system test keeps about one core busy); the
# heavy modules go to one worker as a group, every other module is a group of its own (tests/conftest.py)
TEST_WORKERS ?= 2
# `make demo INSTRUMENTS=sila`: the stations drive their emulated instruments over SiLA 2 (docs/instruments.md)
INSTRUMENTS ?= default

.PHONY: setup demo test test-unit lint bench clean

setup:                      ## create .venv and build ros2_ws
	@bash scripts/bootstrap.sh

demo: setup                 ## the main job: a campaign in the embedded simulation, with its report
	@$(ENV) && lab demo --instruments $(INSTRUMENTS)

# one BLAS thread per process: a worker's planner fit beside a system test's nodes on 2 cores
# spun its second OpenBLAS thread against them (a GP unit test took 53 s instead of 15)
test:                       ## every test: lint, type checks, unit, integration, system
	@bash scripts/bootstrap.sh --test-tools
	@$(ENV) && OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: setup            ## the fast part of the tests
	@$(ENV) && python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup                 ## ruff and mypy only
	@$(ENV) && ruff check . && mypy

bench: setup                ## the benchmarks (long; results go to runs/bench)
	@$(ENV) && lab bench all

clean:                      ## remove the venv, the colcon workspace's build products and run outputs
	rm -rf .venv ros2_ws/build ros2_ws/install ros2_ws/log runs
