"""Score a model on the test data: F1 to latestscore.txt, all metrics to scores.json.

    python training.py && python scoring.py          # scores models/trainedmodel.pkl
    python scoring.py --model production_deployment/trainedmodel.pkl
    python scoring.py --config config.practice.json --json

Reads every data file in test_data_path (checked like ingested data), predicts with the model and writes
<output_model_path>/latestscore.txt (the F1 score, one number) and scores.json beside it (F1, precision, recall,
accuracy, ROC AUC, rows, and which model) for reports.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

import artifacts
import cli
import history
from atomicio import atomic_write, atomic_write_json
from config import ConfigError, display_path, load_config
from datacontract import DataError, read_data_file
from filerecord import list_data_files
from modelstore import ModelError, load_model

log = logging.getLogger("scoring")

ROC_POINTS = 200  # enough for a smooth curve on the dashboard, small enough for every manifest


def read_test_data(cfg: dict[str, Any]) -> pd.DataFrame:
    """All test data files as one typed frame; StepError if none or one is bad, ConfigError if one class only."""
    files = list_data_files(cfg["test_data_path"], cfg["input_file_extension"])
    if not files:
        raise cli.StepError(f"no .{cfg['input_file_extension']} files in {display_path(cfg, cfg['test_data_path'])}")
    try:
        df = pd.concat([read_data_file(p, cfg) for p in files], ignore_index=True)
    except DataError as e:
        raise cli.StepError(f"test data unusable: {e}") from None
    target = cfg["target_column"]
    classes = df[target].unique().tolist()
    if len(classes) < 2:
        # F1 is 0 for every model then: any challenger would be deployed and model drift never found
        raise ConfigError(f"key 'test_data_path': the test data in {display_path(cfg, cfg['test_data_path'])} has "
                          f"only {target}={classes[0]} ({len(df):,} rows): F1 cannot be measured; expected rows of "
                          f"both classes, 0 and 1")
    return df


def metrics(model: Any, df: pd.DataFrame, cfg: dict[str, Any]) -> dict[str, Any]:
    """F1, precision, recall, accuracy and ROC AUC of model on a labelled frame."""
    y = df[cfg["target_column"]].to_numpy()
    X = df[cfg["feature_columns"]]
    pred = model.predict(X)
    proba = model.predict_proba(X)[:, 1]
    both = len(set(y.tolist())) == 2
    return {
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": float(roc_auc_score(y, proba)) if both else None,
        "rows": int(len(y)),
        "positives": int(y.sum()),
        # [[stayed predicted stayed, stayed predicted exited], [exited predicted stayed, exited predicted exited]]
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "roc": roc_points(y, proba) if both else None,
    }


def roc_points(y: Any, proba: Any) -> dict[str, list[float]]:
    """The ROC curve as at most ROC_POINTS (fpr, tpr) pairs, so the dashboard can draw it without the model."""
    fpr, tpr, _ = roc_curve(y, proba)
    keep = sorted(set(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).round().astype(int).tolist()))
    return {"fpr": [round(float(fpr[i]), 4) for i in keep], "tpr": [round(float(tpr[i]), 4) for i in keep]}


def score(cfg: dict[str, Any], model_path: Path | None = None) -> dict[str, Any]:
    """Score a model (default: the trained one) on the test data and write latestscore.txt and scores.json."""
    model_path = Path(model_path) if model_path else artifacts.path(cfg, "model")
    try:
        model, meta = load_model(model_path)
    except ModelError as e:
        raise cli.StepError(str(e)) from None
    result = metrics(model, read_test_data(cfg), cfg)
    result.update({
        "model": display_path(cfg, model_path),
        "model_sha256": meta["sha256"],
        "test_data": display_path(cfg, cfg["test_data_path"]),
        "scored_at": history.now_iso(),
    })
    out = cfg["output_model_path"]
    atomic_write_json(out / artifacts.SCORES, result)
    atomic_write(out / artifacts.SCORE, f"{result['f1']:.6f}\n")
    log.info("F1 %.4f on %d rows for %s", result["f1"], result["rows"], model_path)
    result["score_file"] = display_path(cfg, out / artifacts.SCORE)
    return result


def summary(r: dict[str, Any]) -> str:
    """One line for people."""
    auc = f"{r['roc_auc']:.3f}" if r["roc_auc"] is not None else "n/a"
    return (f"F1 {r['f1']:.3f} on {r['rows']:,} test rows (precision {r['precision']:.3f}, recall "
            f"{r['recall']:.3f}, accuracy {r['accuracy']:.3f}, ROC AUC {auc}) -> {r['score_file']}")


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def score_model(*, config_path: str | Path | None = None) -> float:
    """Score the trained model on the test data as scoring.py does (writes latestscore.txt); return its F1."""
    return float(score(load_config(config_path))["f1"])


if __name__ == "__main__":
    parser = cli.parser(__doc__)
    parser.add_argument("--model", type=Path,
                        help="model file to score (default: <output_model_path>/trainedmodel.pkl)")
    args = parser.parse_args()
    cli.run("scoring", args, lambda cfg: score(cfg, args.model), summary)
