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
    X = df[cfg["feature_columns"]]
    refuse_untrainable(cfg, len(df), sorted(df[target].unique().tolist()),
                       [c for c in X.columns if X[c].isna().all()])
    return build_pipeline(cfg).fit(X, df[target])


def refuse_untrainable(cfg: dict[str, Any], rows: int, classes: list[int], empty: list[str]) -> None:
    """StepError when data cannot be learnt from: no rows, one class, or a feature column without a value."""
    if rows == 0:
        raise cli.StepError("no ingested data to train on; run ingestion.py first")
    if len(classes) < 2:
        raise cli.StepError(f"all {rows:,} ingested rows have {cfg['target_column']}={classes[0]}: "
                            f"a model needs both classes to learn from")
    if empty:
        raise cli.StepError(f"feature column {empty[0]!r} has no values at all in the ingested data")


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
    if cfg["engine"] == "spark":
        model, rows, exited_rate, profile, df = spark_fit(cfg, manifest)
    else:
        df = store.read_dataset(cfg, manifest)
        cli.progress("training", f"fitting on {len(df):,} rows")
        model, rows, exited_rate = fit(cfg, df), len(df), float(df[cfg["target_column"]].mean())
        profile = reference_profile(df, cfg["feature_columns"])
    target = cfg["target_column"]
    out = artifacts.path(cfg, "model")
    meta = {
        "trained_at": history.now_iso(),
        "rows": rows,
        "exited_rate": round(exited_rate, 4),
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
    profile = {**profile, **calibrate(cfg, df), "data_commit": meta["data_commit"]}
    with release_lock(cfg, "training"):  # a deployment copying models/ meanwhile would mix two trainings
        atomic_write_json(artifacts.path(cfg, "profile"), profile)
        save_model(model, out, meta)
    log.info("trained on %d rows in %.2f s -> %s", rows, meta["seconds"], out)
    cli.progress("training", f"{rows:,} rows in {time.monotonic() - started:.1f} s, done", last=True)
    return {**meta, "model": display_path(cfg, out)}


def spark_fit(cfg: dict[str, Any], manifest: dict[str, Any]) -> tuple[Pipeline, int, float, dict[str, Any], Any]:
    """The spark engine's training (sparkengine.py): the model, rows, exit rate, reference profile, and a sample of
    at most CALIBRATION_ROWS rows to calibrate on."""
    import sparkengine  # only here: pyspark is installed where a config chooses the engine (requirements-spark.txt)
    cli.progress("training", "starting Spark")
    data = sparkengine.dataset(cfg, sparkengine.session(cfg, "training"), manifest)
    facts = sparkengine.facts(cfg, data)
    refuse_untrainable(cfg, facts["rows"], facts["classes"], facts["empty"])
    cli.progress("training", f"fitting on {facts['rows']:,} rows with Spark")
    model, profile = sparkengine.fit(cfg, data, build_pipeline(cfg), facts["rows"])
    return model, facts["rows"], facts["exited_rate"], profile, sparkengine.sample(data, facts["rows"],
                                                                                   CALIBRATION_ROWS)


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
