"""The straightforward API that bench/bench_api.py measures ours against (benchmark use only, never deployed).

    python bench/straightforward_app.py --workspace WS --port 8001

It is what the first version of such an API usually looks like: every request unpickles
production_deployment/trainedmodel.pkl and reads the CSV files it needs with pandas, nothing is cached, and
Flask's development server serves it (threaded). It gives the same answers as our API for the benchmarked
requests (same model, same rows), so the comparison is of the same work done two ways:

    POST /prediction {"filepath": "ingesteddata/x.csv"}   predictions, probabilities and ids of every row
    GET  /scoring                                          F1 of the deployed model on the test data, recomputed
    GET  /summarystats                                     count/mean/median/std/min/max of finaldata.csv

It has none of our API's checks (path confinement, data contract, pickle hash): bind it to loopback only.
Paths come from WS/config.json, relative to WS.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
from typing import Any

import pandas as pd
from flask import Flask, jsonify, request
from sklearn.metrics import f1_score


def load_settings(workspace: str) -> dict[str, Any]:
    """The workspace's config.json with its folders joined to the workspace."""
    with open(os.path.join(workspace, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    for key in ("output_folder_path", "test_data_path", "prod_deployment_path"):
        cfg[key] = os.path.join(workspace, cfg[key])
    cfg["workspace"] = workspace
    return cfg


def load_model(cfg: dict[str, Any]) -> Any:
    """Unpickle the deployed model (on every call: that is the point)."""
    with open(os.path.join(cfg["prod_deployment_path"], "trainedmodel.pkl"), "rb") as f:
        return pickle.load(f)


def create_app(cfg: dict[str, Any]) -> Flask:
    """The three benchmarked endpoints, recomputing everything per request."""
    app = Flask(__name__)
    features = cfg["feature_columns"]

    @app.route("/prediction", methods=["POST"])
    def prediction() -> Any:
        """Predict every row of the named file, loading model and file afresh."""
        filepath = request.get_json()["filepath"]
        df = pd.read_csv(os.path.join(cfg["workspace"], filepath))
        model = load_model(cfg)
        proba = model.predict_proba(df[features])[:, 1]
        return jsonify({"rows": len(df), "predictions": (proba > 0.5).astype(int).tolist(),
                        "probabilities": proba.round(6).tolist(), "ids": df[cfg["id_column"]].astype(str).tolist()})

    @app.route("/scoring", methods=["GET"])
    def scoring() -> Any:
        """F1 of the deployed model on the test data, recomputed."""
        df = pd.read_csv(os.path.join(cfg["test_data_path"], "testdata.csv"))
        model = load_model(cfg)
        pred = model.predict(df[features])
        return jsonify({"f1": float(f1_score(df[cfg["target_column"]], pred))})

    @app.route("/summarystats", methods=["GET"])
    def summarystats() -> Any:
        """Summary statistics of finaldata.csv, read afresh."""
        df = pd.read_csv(os.path.join(cfg["output_folder_path"], "finaldata.csv"))
        out = {}
        for col in [*features, cfg["target_column"]]:
            x = df[col].dropna()
            out[col] = {"count": int(x.count()), "mean": float(x.mean()), "median": float(x.median()),
                        "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}
        return jsonify({"rows": len(df), "columns": out})

    return app


def main(workspace: str, port: int) -> None:
    """Serve the app with Flask's development server on loopback."""
    create_app(load_settings(workspace)).run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="folder holding config.json and the data folders")
    parser.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    args = parser.parse_args()
    main(args.workspace, args.port)
