# Two commands: `make run` (set up, run the pipeline on the shipped data) and `make test` (set up, run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test cron-install cron-remove clean-artifacts

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Bootstrap a first release from the practice data (only when nothing is deployed yet), then let the automated
# process find the source data, detect the drift, retrain and deploy.
run: $(STAMP)
	$(PY) fullprocess.py --config config.practice.json
	$(PY) fullprocess.py
	$(PY) deployment.py --list

test: $(STAMP)
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
