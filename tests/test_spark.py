"""The Spark engine (sparkengine.py) against the pandas engine on the same data: the same batches and kept rows, a
model whose risk probabilities agree within 1e-3 on the test data, the same reference profile.

One SparkSession (local[2], two shuffle partitions) serves the whole module: ingestion and training run in this
process through the same functions their scripts run. Spark here is local mode: it cannot show a cluster's
behaviour (workers on other machines reading the store over shared storage).
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import artifacts
import deployment
import diagnostics
import drift
import fullprocess
import generate_data
import ingestion
import scoring
import sparkengine
import store
import training
from config import ConfigError, load_config
from conftest import make_workspace, run_json
from datacontract import columns
from drift import profile_levels
from filerecord import read_manifest
from modelstore import load_model

# Local mode on two cores, few shuffle partitions: a small job's overhead is its partitions.
SPARK = {"master": "local[2]", "driver_memory": "1g", "conf": {"spark.sql.shuffle.partitions": 2}}
CHUNK_BYTES = 8192  # the shipped files in several pieces each: the workers' cuts and the join are exercised


def engine_workspace(path: Path, engine: str) -> dict[str, Any]:
    """A workspace with the shipped data whose config chooses the engine; its loaded config."""
    ws = make_workspace(path)
    raw = json.loads((ws / "config.json").read_text())
    raw["ingestion"]["chunk_bytes"] = CHUNK_BYTES
    (ws / "config.json").write_text(json.dumps({**raw, "engine": engine, "spark": SPARK}))
    return load_config(ws / "config.json")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """The module's SparkSession."""
    base = Path(tempfile.mkdtemp(prefix="spark-session-"))
    session = sparkengine.session(engine_workspace(base / "ws", "spark"), "test")
    yield session
    session.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def engines(spark: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """The shipped data ingested and trained on by each engine, in workspaces of their own."""
    base = Path(tempfile.mkdtemp(prefix="engines-"))
    out = {}
    for engine in ("pandas", "spark"):
        cfg = engine_workspace(base / engine, engine)
        out[engine] = {"cfg": cfg, "ingested": ingestion.ingest(cfg), "trained": training.train(cfg)}
    yield out
    shutil.rmtree(base, ignore_errors=True)


def store_files(cfg: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of every batch file, and the exports."""
    batches = sorted((store.folder(cfg) / "batches").glob("*.parquet"))
    return {**{p.name: p.read_bytes() for p in batches},
            **{what: artifacts.path(cfg, what).read_bytes() for what in ("finaldata", "ingested")}}


def index_arrays(cfg: dict[str, Any]) -> dict[str, bytes]:
    """The arrays of the store's index (the dataset's hashes, per batch its kept and new rows)."""
    manifest = read_manifest(cfg)
    with np.load(store.folder(cfg) / manifest["index"]) as z:
        return {name: z[name].tobytes() for name in z.files}


def test_both_engines_store_the_same_batches_and_keep_the_same_rows(engines: dict[str, Any], spark: Any) -> None:
    pandas_cfg, spark_cfg = engines["pandas"]["cfg"], engines["spark"]["cfg"]
    files = store_files(spark_cfg)
    assert len([n for n in files if n.endswith(".parquet")]) == 2
    assert files == store_files(pandas_cfg)  # batch files and exports, byte for byte
    assert index_arrays(spark_cfg) == index_arrays(pandas_cfg)
    keys = ("rows_read", "rows_added", "duplicates_dropped", "total_rows")
    assert {k: engines["spark"]["ingested"][k] for k in keys} == {k: engines["pandas"]["ingested"][k] for k in keys}
    assert not [p for p in store.folder(spark_cfg).iterdir() if p.name.startswith("spark-parts")]
    # What Spark's training reads as the dataset is what the pandas engine reads.
    spark_rows = sparkengine.dataset(spark_cfg, spark, read_manifest(spark_cfg)).toPandas()
    pandas_rows = store.read_dataset(pandas_cfg, read_manifest(pandas_cfg))
    assert len(spark_rows) == len(pandas_rows) == engines["pandas"]["trained"]["rows"]
    order = list(pandas_rows.columns)  # the same rows; their order is no part of a fit
    pd.testing.assert_frame_equal(spark_rows.astype(pandas_rows.dtypes.to_dict()).sort_values(order, ignore_index=True),
                                  pandas_rows.sort_values(order, ignore_index=True), check_exact=True)


def test_the_spark_model_agrees_with_the_pandas_model_within_1e_3_on_the_test_data(engines: dict[str, Any]) -> None:
    cfg = engines["pandas"]["cfg"]
    test = scoring.read_test_data(cfg)[cfg["feature_columns"]]
    models = {e: load_model(artifacts.path(engines[e]["cfg"], "model"))[0] for e in engines}  # hash-checked
    assert type(models["spark"]) is type(models["pandas"])  # the same scikit-learn Pipeline artifact
    proba = {e: m.predict_proba(test)[:, 1] for e, m in models.items()}
    assert np.abs(proba["spark"] - proba["pandas"]).max() < 1e-3
    # The difference left is sklearn's stopping rule (tol 1e-4): run to convergence, it meets Spark's fit.
    df = store.read_dataset(cfg, read_manifest(cfg))
    converged = training.build_pipeline(cfg).set_params(classify__tol=1e-12)
    converged.fit(df[cfg["feature_columns"]], df[cfg["target_column"]])
    assert np.abs(converged.predict_proba(test)[:, 1] - proba["spark"]).max() < 1e-6
    meta = {e: engines[e]["trained"] for e in engines}
    assert meta["spark"]["rows"] == meta["pandas"]["rows"] and meta["spark"]["exited_rate"] == meta["pandas"][
        "exited_rate"]


def test_both_engines_write_the_same_reference_profile(engines: dict[str, Any]) -> None:
    profiles = {e: json.loads(artifacts.path(engines[e]["cfg"], "profile").read_text()) for e in engines}
    for f, ref in profiles["pandas"]["features"].items():
        got = profiles["spark"]["features"][f]
        assert got["rows"] == ref["rows"] and got["missing_rate"] == ref["missing_rate"], f
        for key in ("edges", "shares", "quantiles"):
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-12, err_msg=f"{f} {key}")


def test_scoring_takes_the_spark_model_as_it_takes_the_pandas_one(engines: dict[str, Any]) -> None:
    scores = {e: run_json("scoring.py", engines[e]["cfg"]["root"]) for e in engines}
    assert scores["spark"]["f1"] == scores["pandas"]["f1"]


def test_balanced_weights_and_every_imputer_reach_sklearn_s_optimum(engines: dict[str, Any], spark: Any) -> None:
    cfg = engines["spark"]["cfg"]
    data = sparkengine.dataset(cfg, spark, read_manifest(cfg))
    df = store.read_dataset(cfg, read_manifest(cfg))
    X, y = df[cfg["feature_columns"]], df[cfg["target_column"]]
    assert X.isna().any().any()  # missing values to fill
    for strategy in ("mean", "most_frequent"):
        model = training.build_pipeline({**cfg, "model": {**cfg["model"], "imputer_strategy": strategy}}).fit(X, y)
        got = sparkengine.fill_values(data, cfg["feature_columns"], strategy, [])
        np.testing.assert_allclose(got, model.named_steps["impute"].statistics_, rtol=1e-12, err_msg=strategy)
    balanced = {**cfg, "model": {**cfg["model"], "class_weight": "balanced"}}
    reference = training.build_pipeline(balanced).set_params(classify__tol=1e-12).fit(X, y)
    model, _ = sparkengine.fit(balanced, data, training.build_pipeline(balanced), len(df))
    test = scoring.read_test_data(cfg)[cfg["feature_columns"]]
    assert np.abs(model.predict_proba(test)[:, 1] - reference.predict_proba(test)[:, 1]).max() < 1e-6


def test_exact_quantiles_are_numpy_s_with_ties_and_missing_values(spark: Any) -> None:
    rng = np.random.default_rng(7)
    ties = np.concatenate([rng.integers(0, 5, 3000).astype(float), rng.exponential(100, 2001), [np.nan] * 50])
    spread = np.where(rng.random(ties.size) < 0.1, np.nan, rng.normal(1e6, 1e3, ties.size))
    frame = spark.createDataFrame(pd.DataFrame({"ties": ties, "spread": spread, "none": np.nan}))
    levels = np.concatenate([[0.5], profile_levels()])
    got = sparkengine.exact_quantiles(frame, ["ties", "spread", "none"], levels)
    for name, values in (("ties", ties), ("spread", spread)):
        np.testing.assert_array_equal(got[name], np.quantile(values[~np.isnan(values)], levels), err_msg=name)
    assert np.isnan(got["none"]).all()


# ---------------------------------------------------------------- beyond the driver's memory

DRIVER_MEMORY_MB = 512  # Spark's smallest workable driver heap: the data below is larger than it
BIG_ROWS = 10_000_000


def write_clients(folder: Path, rows: int, files: int) -> None:
    """Client data files of rows in all, fast (pyarrow's CSV writer), with the shipped data's columns: ids as long
    as a UUID, exits more likely when last month's activity falls below the yearly average's month."""
    rng = np.random.default_rng(17)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        n = rows // files
        yearly = rng.gamma(2.0, 3000.0, n).round()
        monthly = (yearly / 12 * rng.lognormal(0.0, 0.6, n)).round()
        drop = np.log((monthly + 1) / (yearly / 12 + 1))
        exited = (rng.random(n) < 1 / (1 + np.exp(2.0 + 3.0 * drop))).astype(np.int64)
        ids = pc.binary_join_element_wise(f"client-{i:04d}-5f0c-4b1e-9a7d-2c3e8f61a0b4-",
                                          pc.cast(pa.array(np.arange(n)), pa.string()), "")
        table = pa.table({"corporation": ids, "lastmonth_activity": monthly, "lastyear_activity": yearly,
                          "number_of_employees": rng.integers(1, 2000, n).astype(float), "exited": exited})
        with open(folder / f"clients{i:02d}.csv", "wb") as f:  # a header without quotes (pyarrow quotes it)
            f.write((",".join(table.column_names) + "\n").encode())
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def test_spark_trains_on_data_larger_than_its_driver_memory(tmp_path: Path) -> None:
    # What it cannot show: a cluster's executors; here the one local JVM is driver and executor, so all the work
    # happens inside DRIVER_MEMORY_MB of heap.
    ws = make_workspace(tmp_path / "ws")
    write_clients(ws / "sourcedata", BIG_ROWS, 10)
    run_json("ingestion.py", ws, timeout=600)  # the pandas engine: the store is the same whichever ingests
    cfg = load_config(ws / "config.json")
    batches = [store.batch_path(cfg, b["id"]) for b in read_manifest(cfg)["batches"]]
    # The dataset's columns in memory as Arrow holds them (the least any engine takes): half as much again as the heap
    data_bytes = sum(pq.read_table(p, columns=columns(cfg)).nbytes for p in batches)
    assert data_bytes > 1.5 * DRIVER_MEMORY_MB * 2**20
    raw = json.loads((ws / "config.json").read_text())
    spark_cfg = {**SPARK, "driver_memory": f"{DRIVER_MEMORY_MB}m"}
    (ws / "config.json").write_text(json.dumps({**raw, "engine": "spark", "spark": spark_cfg}))
    trained = run_json("training.py", ws, timeout=900)
    assert trained["rows"] > 0.99 * BIG_ROWS
    heap = re.search(r"driver heap (\d+) MB", (ws / "logs" / "training.log").read_text())
    assert heap and int(heap.group(1)) <= DRIVER_MEMORY_MB < data_bytes / 2**20 / 1.5
    # The model learnt the data's relation: exits rise as last month falls below the yearly average's month.
    model = load_model(artifacts.path(cfg, "model"))[0]
    probe = pd.DataFrame({"lastmonth_activity": [100.0, 500.0, 2000.0], "lastyear_activity": [6000.0] * 3,
                          "number_of_employees": [100.0] * 3})
    risk = model.predict_proba(probe)[:, 1]
    assert risk[0] > risk[1] > risk[2]


def test_the_engine_keys_are_checked_with_one_line_naming_the_key(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    for bad, key in (({"engine": "dask"}, "'engine'"), ({"spark": {"conf": {"spark.x": [1]}}}, "'spark.conf'"),
                     ({"spark": {"master": ""}}, "'spark.master'"), ({"spark": "local"}, "'spark'")):
        raw = json.loads((ws / "config.json").read_text())
        (ws / "bad.json").write_text(json.dumps({**raw, **bad}))
        with pytest.raises(ConfigError) as err:
            load_config(ws / "bad.json")
        assert key in str(err.value) and "\n" not in str(err.value), bad
    assert load_config(ws / "config.json")["engine"] == "pandas"  # the default: today's behaviour


def test_diagnostics_figures_are_spark_aggregates_equal_to_the_pandas_engines(engines: dict[str, Any],
                                                                               spark: Any) -> None:
    rows_p, stats_p, missing_p = diagnostics.dataset_figures(engines["pandas"]["cfg"])
    rows_s, stats_s, missing_s = diagnostics.dataset_figures(engines["spark"]["cfg"])
    assert rows_s == rows_p > 0
    assert missing_s == missing_p
    assert list(stats_s) == list(stats_p)
    for col, figures in stats_p.items():
        for name, value in figures.items():
            assert stats_s[col][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (col, name)


def test_the_drift_check_on_spark_sums_up_the_same_figures_and_verdicts_as_the_pandas_engine(
        engines: dict[str, Any], spark: Any, tmp_path: Path) -> None:
    """A deployed release checked on new rows (drifted, with missing cells, labelled and unlabelled): Spark's
    aggregates give the pandas engine's counts exactly, its sums and CDF gaps within rounding, and the same
    verdicts through the tick's own check (fullprocess.check_new_rows)."""
    shutil.copytree(engines["pandas"]["cfg"]["root"], tmp_path / "ws")
    cfg = load_config(tmp_path / "ws" / "config.json")
    scoring.score(cfg)
    deployment.deploy(cfg)
    rng = np.random.default_rng(7)
    new = generate_data.clients(rng, 600, "new")
    new.loc[new.index[:40], "lastyear_activity"] = np.nan
    new["lastmonth_activity"] = new["lastmonth_activity"] * 1.4 + 30  # a shift the data-drift check must see
    new.to_csv(cfg["input_folder_path"] / "dataset5.csv", index=False)
    watch = generate_data.clients(rng, 300, "new").drop(columns=[cfg["target_column"]])
    watch.loc[watch.index[:25], "number_of_employees"] = np.nan
    watch.to_csv(cfg["input_folder_path"] / "monitoring.csv", index=False)
    ingestion.ingest(cfg)
    stored = read_manifest(cfg)
    model, manifest = fullprocess._deployed_model(cfg)
    profile = fullprocess._profile(manifest)
    start = fullprocess.first_unchecked(cfg, manifest)
    assert start > 0

    new_rows, unlabelled, _ = fullprocess.rows_to_check(cfg, manifest, stored)
    assert len(new_rows) == 600 and len(unlabelled) == 300
    expected = drift.new_row_figures(cfg, model, profile, new_rows, unlabelled)
    got = sparkengine.new_row_figures(cfg, spark, model, profile, stored, start)
    assert got["rows"] == expected["rows"] == 900
    assert got["predicted"] == expected["predicted"]
    assert got["labelled"].tolist() == expected["labelled"].tolist()
    assert got["expected"] == pytest.approx(expected["expected"], rel=1e-9)
    assert list(got["features"]) == list(expected["features"]) == cfg["feature_columns"]
    for name, want in [*expected["features"].items(), ("risk", expected["risk"])]:
        have = got["risk"] if name == "risk" else got["features"][name]
        assert (have["present"], have["missing"]) == (want["present"], want["missing"]), name
        assert have["below_edges"].tolist() == want["below_edges"].tolist(), name
        assert have["upto_quantiles"].tolist() == want["upto_quantiles"].tolist(), name
        assert have["gaps"] == pytest.approx(want["gaps"], abs=1e-12), name
    assert got["features"]["lastyear_activity"]["missing"] == 40
    assert got["features"]["number_of_employees"]["missing"] == 25

    pandas_check, pandas_start = fullprocess.check_new_rows(cfg, model, manifest, stored)
    spark_check, spark_start = fullprocess.check_new_rows({**cfg, "engine": "spark"}, model, manifest, stored)
    assert spark_start == pandas_start == start
    assert pandas_check["data_verdict"] == "DRIFT"
    verdicts = ["verdict", "data_verdict", "new_rows", "unlabelled_rows"]
    assert [spark_check[k] for k in verdicts] == [pandas_check[k] for k in verdicts]
    assert spark_check["features"] == pandas_check["features"]
    for part in ("estimated", "prediction", "prior"):
        assert spark_check[part]["verdict"] == pandas_check[part]["verdict"], part
    assert spark_check["estimated"]["f1"] == pytest.approx(pandas_check["estimated"]["f1"], rel=1e-9)
