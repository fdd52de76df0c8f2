# Two commands: `make run` (set up, run the pipeline on the shipped data) and `make test` (set up, run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test clean-artifacts

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) ingestion.py
	$(PY) training.py
	$(PY) scoring.py

test: $(STAMP)
	$(PY) -m pytest -q

clean-artifacts:
	rm -rf ingesteddata models practicemodels production_deployment reports logs history
