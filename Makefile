# Two commands: `make run` (set up, run the pipeline on the shipped data) and `make test` (set up, run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint system-packages serve stop cron-install cron-remove clean-artifacts bench soak

# Debian packages, as "command:package": what the tests drive for real (a cron daemon, the PDF report parsed back,
# the dashboard in a headless browser, a PostgreSQL server for history_url). Debian's Python needs python3-venv
# before it can make the .venv. The Spark engine (config "engine": "spark") runs on Java 17; pyspark comes from
# requirements-spark.txt.
SPARK_PACKAGES := java:openjdk-17-jre-headless
SPARK_STAMP := $(VENV)/.spark-installed
TEST_PACKAGES := cron:cron pdftotext:poppler-utils chromium:chromium chromedriver:chromium-driver initdb:postgresql \
	$(SPARK_PACKAGES)
# Debian keeps PostgreSQL's server commands (initdb, pg_ctl) off PATH, in /usr/lib/postgresql/<version>/bin
PG_BIN_GLOB := /usr/lib/postgresql/*/bin
VENV_PACKAGES := $(shell $(PYTHON) -c "import ensurepip" 2>/dev/null || echo python3-venv)

# Installs the missing ones as root through apt-get (one line says which); not root: stops with the command to run.
define install_missing
	@missing="$(2)"; for pair in $(1); do command -v $${pair%%:*} >/dev/null 2>&1 || \
	  ls $(PG_BIN_GLOB)/$${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages; run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	  echo "installing Debian packages:$$missing"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends$$missing >/dev/null; fi
endef

$(STAMP): requirements.txt requirements-dev.txt
	$(call install_missing,,$(VENV_PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# pyspark into the .venv: by `make test` always, by `make run` when a config it runs chooses the Spark engine.
$(SPARK_STAMP): $(STAMP) requirements-spark.txt
	$(call install_missing,$(SPARK_PACKAGES),)
	$(PY) -m pip install --quiet -r requirements-spark.txt
	touch $(SPARK_STAMP)

SPARK_CHOSEN = $(shell $(PY) -c "from config import load_config; print(any(load_config(c)['engine'] == 'spark' \
	for c in ('config.json', 'config.practice.json')))" 2>/dev/null)

# Bootstrap a first release from the practice data (only when nothing is deployed yet), then let the automated
# process find the source data, detect the drift, retrain and deploy.
run: $(STAMP)
	@if [ "$(SPARK_CHOSEN)" = True ]; then $(MAKE) --no-print-directory $(SPARK_STAMP); fi
	$(PY) fullprocess.py --config config.practice.json
	$(PY) fullprocess.py
	$(PY) deployment.py --list
	$(MAKE) --no-print-directory serve
	$(PY) apicalls.py
	@echo "The API is serving. Open the dashboard: $(API_URL)dashboard   Or try:"
	@echo "  curl -s $(API_URL)health"
	@echo "  curl -s $(API_URL)scoring"
	@echo "  curl -s -X POST -H 'Content-Type: application/json' -d '{\"filepath\": \"testdata/testdata.csv\"}' $(API_URL)prediction"
	@echo "  curl -s $(API_URL)summarystats"
	@echo "  curl -s $(API_URL)diagnostics"
	@echo "Stop it with: make stop"

API_URL = $(shell $(PY) -c "from config import load_config; print(load_config()['url'])" 2>/dev/null)
PIDFILE := logs/gunicorn.pid

# gunicorn in the background, settings from gunicorn.conf.py (bind, workers, logs under logs/).
serve: $(STAMP)
	@mkdir -p logs
	@if [ -f $(PIDFILE) ] && kill -0 $$(cat $(PIDFILE)) 2>/dev/null; then echo "API already running (pid $$(cat $(PIDFILE)))"; \
	else $(VENV)/bin/gunicorn -c gunicorn.conf.py --daemon --pid $(PIDFILE) wsgi:app && \
	  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do \
	    $(PY) -c "import requests,sys; requests.get('$(API_URL)health', timeout=1)" 2>/dev/null && break; sleep 0.5; done; \
	  echo "API serving at $(API_URL) (pid $$(cat $(PIDFILE)), logs in logs/)"; fi

stop:
	@if [ -f $(PIDFILE) ] && kill $$(cat $(PIDFILE)) 2>/dev/null; then echo "API stopped"; else echo "API was not running"; fi
	@rm -f $(PIDFILE)

system-packages:
	$(call install_missing,$(TEST_PACKAGES),)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: system-packages lint $(SPARK_STAMP)
	$(PY) -m pytest -q

CRON_LINE = $(shell grep -v '^\#' cronjob.txt | sed 's|@PROJECT@|$(CURDIR)|g')
cron-install: $(STAMP)
	@(crontab -l 2>/dev/null | grep -vF '$(CURDIR)/fullprocess.py'; echo '$(CRON_LINE)') | crontab -
	@echo "installed: $(CRON_LINE)"

cron-remove:
	@(crontab -l 2>/dev/null | grep -vF '$(CURDIR)/fullprocess.py') | crontab -
	@echo "removed the fullprocess line for $(CURDIR) from the crontab"

clean-artifacts:
	rm -rf ingesteddata models practicemodels production_deployment reports logs history

# The benchmark suite (bench/run.py: every case, the API one included, at 10k to 10M rows, ours
# against a straightforward implementation and the libraries' floor; under 30 minutes; not part of `make test`).
# Results in docs/benchmarks.md. A quick look: $(PY) bench/run.py --sizes 10k,100k --no-doc
bench: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) bench/run.py

# The long reliability campaigns (about 40 minutes on 2 cores; `make test` runs their quick form): 200 kill -9s,
# 10 rounds of 10 overlapping ticks, a simulated month of cron ticks, a full disk, 100,000 abusive API requests;
# results in docs/reliability.md.
soak: $(STAMP)
	SOAK=1 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_crash.py tests/test_overlap.py tests/test_month.py \
	  tests/test_api_abuse.py
