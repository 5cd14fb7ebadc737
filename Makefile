# Tormenta: the one entry point for people, the README and CI.
# `make run` brings up the whole product; `make test` installs what it needs and tests it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
JARS := .cache/jars
STAMP := .cache/stamps
MVN := mvn -q -B -Dmaven.repo.local=$(HOME)/.m2/repository

.DEFAULT_GOAL := help
.PHONY: help install deps jars jvm-archive browser monitoring run test test-unit test-integration lint bench clean stop

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP)/venv: requirements.txt
	@mkdir -p $(STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(STAMP)/jars: jvm/broker/pom.xml jvm/spark/pom.xml
	@mkdir -p $(STAMP)
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) is needed to resolve the Kafka/Spark jars; install it (apt-get install maven)"; exit 1; }
	@command -v java >/dev/null || { echo "error: Java 17+ is needed; install it (apt-get install openjdk-17-jre-headless)"; exit 1; }
	rm -rf $(JARS)/broker $(JARS)/spark
	cd jvm/broker && $(MVN) dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(JARS)/broker -DincludeScope=runtime
	cd jvm/spark && $(MVN) dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(JARS)/spark -DincludeScope=runtime
	@touch $@

$(STAMP)/browser:
	@mkdir -p $(STAMP)
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "error: could not install chromium (apt-get install chromium needs root)"; exit 1; }; }
	@touch $@

# Prometheus (with promtool) and Alertmanager from Debian's packages. No recommends (no node
# exporter), and no service started by the package: `make run` starts them itself, on loopback.
$(STAMP)/monitoring:
	@mkdir -p $(STAMP)
	@{ test -x /usr/bin/prometheus && test -x /usr/bin/promtool && test -x /usr/bin/prometheus-alertmanager; } || { \
	  echo "installing Debian's prometheus and prometheus-alertmanager"; \
	  (apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager >/dev/null) \
	  || { echo "error: could not install prometheus and prometheus-alertmanager (apt-get install needs root)"; exit 1; }; }
	@touch $@

deps: $(STAMP)/venv ## install the Python dependencies into .venv
jars: $(STAMP)/jars ## resolve the pinned Maven jars (broker, tools, Kafka connector, Delta) into .cache/jars
browser: $(STAMP)/browser ## install Debian's chromium for the real-browser tests
monitoring: $(STAMP)/monitoring ## install Debian's prometheus (with promtool) and prometheus-alertmanager
jvm-archive: deps jars ## build the JVM class archive that shortens the job's cold start (once per Java/pyspark/jars)
	$(PY) -m pipeline jvm-archive --if-missing
install: deps jars jvm-archive monitoring ## everything `make run` needs

run: install ## run the whole product: broker, topics, job, live lane, emulator and the app (Ctrl-C stops all)
	$(PY) -m pipeline run

stop: ## stop whatever `make run` left running (normally Ctrl-C does it)
	-$(PY) -m pipeline broker stop

test: install browser ## install what is needed, then run every test (unit + real-stack integration + browser)
	TORMENTA_TEST_STARTUP_ROUNDS=5 $(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

test-unit: deps ## fast tests only (no broker, no JVM)
	$(PY) -m pytest -m "not integration and not browser and not slow"

lint: deps ## ruff
	$(VENV)/bin/ruff check pipeline tests bench pages streamlit_app.py

bench: install ## run the benchmarks in bench/ (prints figures)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean: ## remove local data (Delta tables, checkpoints, broker logs)
	rm -rf data
