"""Every artifact's name and the folder it lives in: the one place a file name is spelled.

    from artifacts import path
    path(cfg, "finaldata")          # <output_folder_path>/finaldata.csv
    MODEL                           # "trainedmodel.pkl", the name inside any model or release folder

Standard library only, so the cron tick with no new data can name what it looks at without importing pandas.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# output_folder_path: the ingested store (batches and manifest) and its exports, which are rebuilt from it
STORE = "store"
STORE_MANIFEST = "store/manifest.json"
TABLE = "table"  # rows pulled from input_table, as data files, and the last key taken
REQUESTS = "requests"  # rows the API scored, when api.log_requests is on: monitoring data ingestion takes in
FINALDATA = "finaldata.csv"
INGESTED = "ingestedfiles.txt"
OUTPUTS_PENDING = ".outputs-pending"  # a run changed something the outputs do not show yet
TICK_LOCK = ".fullprocess.lock"
INGESTION_LOCK = ".ingestion.lock"

# output_model_path, and each release folder: one trained model and what vouches for it
MODEL = "trainedmodel.pkl"
MODEL_RECORD = "trainedmodel.json"
SCORE = "latestscore.txt"
SCORES = "scores.json"
PROFILE = "reference_profile.json"
CONFUSION = "confusionmatrix.png"
ROC = "roccurve.png"
DIAGNOSTICS = "diagnostics.json"
API_RETURNS = "apireturns.txt"
# What a release copies from output_model_path (the ingestion record joins them).
MODEL_FILES = (MODEL, MODEL_RECORD, SCORE, SCORES, PROFILE)

# prod_deployment_path
RELEASES = "releases"
CURRENT = "current"
MANIFEST = "manifest.json"
DEPLOYMENT_LOCK = ".deployment.lock"
WELL_KNOWN = (MODEL, SCORE, INGESTED)  # links at the top of prod_deployment_path through current/

# report_folder_path
REPORT = "report.pdf"

# name -> the config key of its folder
FOLDER_OF = {
    "store": "output_folder_path", "store_manifest": "output_folder_path", "finaldata": "output_folder_path",
    "ingested": "output_folder_path", "outputs_pending": "output_folder_path", "requests": "output_folder_path",
    "table": "output_folder_path",
    "tick_lock": "output_folder_path", "ingestion_lock": "output_folder_path",
    "model": "output_model_path", "model_record": "output_model_path", "score": "output_model_path",
    "scores": "output_model_path", "profile": "output_model_path", "confusion": "output_model_path",
    "roc": "output_model_path", "diagnostics": "output_model_path", "api_returns": "output_model_path",
    "releases": "prod_deployment_path", "current": "prod_deployment_path", "deployment_lock": "prod_deployment_path",
    "report": "report_folder_path",
}


def path(cfg: dict[str, Any], what: str) -> Path:
    """Where an artifact lives under the config, by its lower-case name here ("finaldata", "model", ...)."""
    return Path(cfg[FOLDER_OF[what]]) / globals()[what.upper()]
