"""Train the attrition model on the ingested data.

    python training.py                                # config.json: ingesteddata/finaldata.csv -> models/
    python training.py --config config.practice.json  # writes practicemodels/trainedmodel.pkl

Fits a scikit-learn Pipeline (impute missing features, scale, LogisticRegression; parameters from the config's
"model" section) on <output_folder_path>/finaldata.csv and writes <output_model_path>/trainedmodel.pkl with its
record trainedmodel.json (hash, when, on what data), and reference_profile.json (per-feature bins and
quantiles of the training data, which drift checks compare new data with). Refuses clearly when there is no data
or only one class.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import artifacts
import cli
import history
import store
from atomicio import atomic_write_json
from config import display_path, load_config
from deployment import release_lock
from drift import calibration, reference_profile
from filerecord import read_manifest
from modelstore import load_model, save_model

log = logging.getLogger("training")

CALIBRATION_ROWS = 200_000


def build_pipeline(cfg: dict[str, Any]) -> Pipeline:
    """The untrained model: impute, scale, logistic regression, as the config sets them."""
    m = cfg["model"]
    return Pipeline([
        ("impute", SimpleImputer(strategy=m["imputer_strategy"])),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(C=m["C"], max_iter=m["max_iter"], class_weight=m["class_weight"])),
    ])


def fit(cfg: dict[str, Any], df: Any) -> Pipeline:
    """Fit a fresh pipeline on a typed frame; StepError if it cannot be learnt from."""
    target = cfg["target_column"]
    if len(df) == 0:
        raise cli.StepError("no ingested data to train on; run ingestion.py first")
    classes = sorted(df[target].unique().tolist())
    if len(classes) < 2:
        raise cli.StepError(f"all {len(df):,} ingested rows have {target}={classes[0]}: "
                            f"a model needs both classes to learn from")
    X = df[cfg["feature_columns"]]
    if X.isna().all().any():
        empty = [c for c in X.columns if X[c].isna().all()]
        raise cli.StepError(f"feature column {empty[0]!r} has no values at all in the ingested data")
    return build_pipeline(cfg).fit(X, df[target])


def calibrate(cfg: dict[str, Any], df: Any) -> dict[str, Any]:
    """The calibration the label-free checks use (drift.calibration), from probabilities the model gives rows it
    was not fitted on: 5-fold cross-validated, on at most CALIBRATION_ROWS rows (a logistic regression needs no more
    to be calibrated, and ten million rows would cost five more fits)."""
    sample = df.sample(min(len(df), CALIBRATION_ROWS), random_state=0) if len(df) > CALIBRATION_ROWS else df
    y = sample[cfg["target_column"]].to_numpy()
    folds = min(5, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        return {}
    proba = cross_val_predict(build_pipeline(cfg), sample[cfg["feature_columns"]], y, cv=folds,
                              method="predict_proba")[:, 1]
    return calibration(proba, y)


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train on the store's labelled rows and save the model with its record; returns what was trained."""
    started = time.monotonic()
    cli.progress("training", f"reading {display_path(cfg, store.folder(cfg))}")
    manifest = read_manifest(cfg)
    df = store.read_dataset(cfg, manifest)
    cli.progress("training", f"fitting on {len(df):,} rows")
    model = fit(cfg, df)
    target = cfg["target_column"]
    out = artifacts.path(cfg, "model")
    meta = {
        "trained_at": history.now_iso(),
        "rows": len(df),
        "exited_rate": round(float(df[target].mean()), 4),
        "features": list(cfg["feature_columns"]),
        "target": target,
        "data_commit": manifest["commit"],  # the store's state trained on: the profile belongs to the same
        # drift checks start after the rows a model was trained on
        "data_batch": max((b["id"] for b in manifest["batches"]), default=0),
        "params": {k: v for k, v in cfg["model"].items()},
        "sklearn_version": sklearn.__version__,
        "seconds": round(time.monotonic() - started, 3),
    }
    # The profile is written before the model: a model on disk always has the profile of its own data.
    cli.progress("training", "profiling the features for drift checks, saving")
    profile = {**reference_profile(df, cfg["feature_columns"]), **calibrate(cfg, df),
               "data_commit": meta["data_commit"]}
    with release_lock(cfg, "training"):  # a deployment copying models/ meanwhile would mix two trainings
        atomic_write_json(artifacts.path(cfg, "profile"), profile)
        save_model(model, out, meta)
    log.info("trained on %d rows in %.2f s -> %s", len(df), meta["seconds"], out)
    cli.progress("training", f"{len(df):,} rows in {time.monotonic() - started:.1f} s, done", last=True)
    return {**meta, "model": display_path(cfg, out)}


def summary(r: dict[str, Any]) -> str:
    """One line for people."""
    return (f"trained model on {r['rows']:,} rows ({len(r['features'])} features, "
            f"{r['exited_rate']:.0%} exited) -> {r['model']}")


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.


def train_model(*, config_path: str | Path | None = None) -> Pipeline:
    """Train on finaldata.csv as training.py does; return the fitted Pipeline it saved."""
    cfg = load_config(config_path)
    train(cfg)
    # The saved file, hash-checked, rather than a second fit: what is returned is exactly what gets deployed.
    return load_model(artifacts.path(cfg, "model"))[0]


if __name__ == "__main__":
    cli.run("training", cli.parser(__doc__).parse_args(), train, summary)
