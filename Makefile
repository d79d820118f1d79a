# The two set-up commands of the README:  make demo  and  make test.
# Each creates the virtualenv, installs the project, installs missing system packages (PostgreSQL
# server, Java, Maven, Chromium, Prometheus, Alertmanager) when run as root on Debian, starts the
# real services and runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint venv deps up down unit chaos clean

venv: $(VENV)/.installed

# the compiled modules' sources too: pip install builds them (setup.py; see README)
$(VENV)/.installed: pyproject.toml setup.py backbone/_speedups.c $(wildcard backbone/domain/*.py)
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing: python3-venv python3-dev"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev && $(PYTHON) -m venv $(VENV); \
	  else echo "$(PYTHON) cannot create a virtualenv: install python3-venv (and python3-dev for the compiled fast paths)"; exit 1; fi; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# System packages: only what is missing, only with apt-get, only as root (else: say what to install).
# Prometheus and Alertmanager are tools here (promtool, the lag tests' own servers): the services
# their Debian packages start on a systemd host are stopped and disabled when make installed them.
deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || missing="$$missing java"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
	  || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq; \
	    jre=openjdk-17-jre-headless; apt-cache show $$jre >/dev/null 2>&1 || jre=default-jre-headless; \
	    missing=$$(echo "$$missing" | sed "s/ java/ $$jre/"); \
	    echo "installing:$$missing"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    units=$$(echo "$$missing" | tr ' ' '\n' | grep -E '^prometheus(-alertmanager)?$$' || true); \
	    if [ -n "$$units" ] && [ -d /run/systemd/system ]; then systemctl disable --now $$units >/dev/null 2>&1 || true; fi; \
	  else echo "missing system packages:$$missing (Java 17 or later; e.g. sudo apt-get install$$(echo "$$missing" | sed 's/ java/ openjdk-17-jre-headless/'))"; exit 1; fi; \
	fi

up: venv deps
	$(BIN)/backbone local up

down: venv
	$(BIN)/backbone local down

demo: up
	$(BIN)/backbone demo

# ruff and mypy as configured in pyproject.toml
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# The suite on the compiled build, then the unit tests on the same source interpreted (what an
# install without a C compiler runs; backbone.compiled).
test: venv deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	BACKBONE_INTERPRETED=1 $(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)
	BACKBONE_INTERPRETED=1 $(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

# The fault scenarios of tests/chaos at the sizes of docs/reliability.md, on a 3-node cluster and a
# PostgreSQL server of their own (the suite runs a small subset); figures go to chaos-report.jsonl.
CHAOS_EVENTS ?= 200000
CHAOS_KILL_EVENTS ?= 1000000
CHAOS_KILLS ?= 50
CHAOS_OUTAGE_S ?= 30
chaos: venv deps
	BACKBONE_CHAOS_FULL=1 BACKBONE_CHAOS_EVENTS=$(CHAOS_EVENTS) BACKBONE_CHAOS_KILL_EVENTS=$(CHAOS_KILL_EVENTS) \
	  BACKBONE_CHAOS_KILLS=$(CHAOS_KILLS) BACKBONE_CHAOS_OUTAGE_S=$(CHAOS_OUTAGE_S) \
	  BACKBONE_CHAOS_REPORT=$(CURDIR)/chaos-report.jsonl $(BIN)/python -m pytest tests/chaos -m chaos $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build backbone/_speedups*.so backbone/domain/*.so
