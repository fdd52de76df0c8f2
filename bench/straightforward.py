"""The straightforward pipeline that bench/run.py measures ours against (benchmark use only, never deployed).

    python bench/straightforward.py ingest --workspace WS    # every source CSV -> finaldata.csv, again each run
    python bench/straightforward.py train --workspace WS     # finaldata.csv -> models/trainedmodel.pkl
    python bench/straightforward.py score --workspace WS     # test data -> models/latestscore.txt
    python bench/straightforward.py tick --workspace WS      # the cron entry: new files? then ingest, train, score
    python bench/straightforward.py drift --workspace WS --new FILE   # the model and each feature on FILE

It is what the first version of this design usually looks like: pandas and scikit-learn are
imported at the top, so even a tick that finds nothing new pays for them; every ingest reads every source file,
concatenates them, drops duplicates and rewrites finaldata.csv; the drift check re-reads the training data and
compares each feature with scipy's two-sample KS test and a PSI over its deciles. It has none of our checks
(data contract, atomic writes, locks, history). Paths come from WS/config.json, relative to WS.
Each command prints one JSON line of what it did (with `seconds`, the work alone after the imports), which the
benchmark compares with our figures.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL = {"C": 1.0, "max_iter": 1000, "class_weight": None, "imputer_strategy": "median"}


def load_settings(workspace: str) -> dict[str, Any]:
    """The workspace's config.json with its folders joined to the workspace."""
    with open(os.path.join(workspace, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    for key in ("input_folder_path", "output_folder_path", "test_data_path", "output_model_path"):
        cfg[key] = os.path.join(workspace, cfg[key])
    cfg["model"] = {**MODEL, **cfg.get("model", {})}
    return cfg


def csv_files(folder: str) -> list[str]:
    """The CSV files of a folder, by name."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".csv"))


def ingest(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read every source file, concatenate, drop duplicates, rewrite finaldata.csv and the file list."""
    files = csv_files(cfg["input_folder_path"])
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True).drop_duplicates()
    os.makedirs(cfg["output_folder_path"], exist_ok=True)
    df.to_csv(os.path.join(cfg["output_folder_path"], "finaldata.csv"), index=False)
    with open(os.path.join(cfg["output_folder_path"], "ingestedfiles.txt"), "w", encoding="utf-8") as f:
        f.write("".join(os.path.basename(p) + "\n" for p in files))
    return {"files": len(files), "rows": len(df)}


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fit impute, scale, logistic regression on finaldata.csv and pickle it."""
    df = pd.read_csv(os.path.join(cfg["output_folder_path"], "finaldata.csv"))
    m = cfg["model"]
    model = Pipeline([("impute", SimpleImputer(strategy=m["imputer_strategy"])), ("scale", StandardScaler()),
                      ("classify", LogisticRegression(C=m["C"], max_iter=m["max_iter"],
                                                      class_weight=m["class_weight"]))])
    model.fit(df[cfg["feature_columns"]], df[cfg["target_column"]])
    os.makedirs(cfg["output_model_path"], exist_ok=True)
    with open(os.path.join(cfg["output_model_path"], "trainedmodel.pkl"), "wb") as f:
        pickle.dump(model, f)
    return {"rows": len(df)}


def load_model(cfg: dict[str, Any]) -> Any:
    """Unpickle the trained model."""
    with open(os.path.join(cfg["output_model_path"], "trainedmodel.pkl"), "rb") as f:
        return pickle.load(f)


def score(cfg: dict[str, Any]) -> dict[str, Any]:
    """F1 of the trained model on the test data, written to latestscore.txt."""
    df = pd.concat([pd.read_csv(f) for f in csv_files(cfg["test_data_path"])], ignore_index=True)
    f1 = float(f1_score(df[cfg["target_column"]], load_model(cfg).predict(df[cfg["feature_columns"]])))
    with open(os.path.join(cfg["output_model_path"], "latestscore.txt"), "w", encoding="utf-8") as f:
        f.write(str(f1))
    return {"f1": f1, "rows": len(df)}


def tick(cfg: dict[str, Any]) -> dict[str, Any]:
    """The cron entry: when a source file is not in ingestedfiles.txt, ingest, train and score again."""
    try:
        with open(os.path.join(cfg["output_folder_path"], "ingestedfiles.txt"), encoding="utf-8") as f:
            known = set(f.read().split())
    except FileNotFoundError:
        known = set()
    new = [p for p in csv_files(cfg["input_folder_path"]) if os.path.basename(p) not in known]
    if not new:
        return {"new_files": 0}
    return {"new_files": len(new), **ingest(cfg), **train(cfg), **score(cfg)}


def psi(ref: np.ndarray, new: np.ndarray) -> float:
    """Population stability index of new against ref over ref's deciles."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.maximum(np.histogram(ref, edges)[0] / len(ref), 1e-4)
    q = np.maximum(np.histogram(new, edges)[0] / len(new), 1e-4)
    return float(np.sum((q - r) * np.log(q / r)))


def drift(cfg: dict[str, Any], new_file: str) -> dict[str, Any]:
    """F1 of the model on a new file against latestscore.txt, and KS and PSI of each feature against finaldata."""
    new = pd.read_csv(new_file)
    ref = pd.read_csv(os.path.join(cfg["output_folder_path"], "finaldata.csv"))
    with open(os.path.join(cfg["output_model_path"], "latestscore.txt"), encoding="utf-8") as f:
        deployed = float(f.read())
    f1 = float(f1_score(new[cfg["target_column"]], load_model(cfg).predict(new[cfg["feature_columns"]])))
    features = {}
    for col in cfg["feature_columns"]:
        a, b = ref[col].dropna().to_numpy(), new[col].dropna().to_numpy()
        test = ks_2samp(a, b)
        features[col] = {"ks": float(test.statistic), "ks_pvalue": float(test.pvalue), "psi": psi(a, b)}
    return {"rows": len(new), "f1": f1, "deployed_f1": deployed, "drift": f1 < deployed, "features": features}


def main() -> None:
    """Run one command on a workspace and print its result as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ingest", "train", "score", "tick", "drift"])
    p.add_argument("--workspace", required=True, help="folder holding config.json and the data folders")
    p.add_argument("--new", help="drift: the new data file")
    args = p.parse_args()
    cfg = load_settings(args.workspace)
    t0 = time.perf_counter()
    if args.command == "drift":
        result = drift(cfg, args.new)
    else:
        result = {"ingest": ingest, "train": train, "score": score, "tick": tick}[args.command](cfg)
    result["seconds"] = time.perf_counter() - t0  # the work alone, after the imports
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
