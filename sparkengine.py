"""The Spark engine (config "engine": "spark"): ingestion checks and stores data files on Spark's workers, training
fits on the store with Spark ML, and diagnostics and the tick's drift check sum up the store's rows there, so the
data may outgrow this machine's memory. What it writes is what the pandas engine writes: the same store batches
and index (byte for byte), the same scikit-learn Pipeline artifact (its parameters fitted here, copied into the
Pipeline) and reference profile, so scoring, the API and the reports never know which engine ran.

    import sparkengine                                   # needs pyspark (requirements-spark.txt) and Java 17
    hashes = sparkengine.write_batch(cfg, batch_id, path, "x.csv", True, 2)  # ingestion's hook (2: the row hash)
    spark = sparkengine.session(cfg, "training")         # one per process, from the config's spark section
    data = sparkengine.dataset(cfg, spark, manifest)     # the store's kept labelled rows, as a Spark DataFrame
    model, profile = sparkengine.fit(cfg, data, build_pipeline(cfg), rows)
    figures = sparkengine.new_row_figures(cfg, spark, model, profile, manifest, after)  # drift.release_verdicts' input

The step scripts import this module only when the config chooses the engine. Spark's Python workers import it
(and the project's helper modules) by name: on a cluster the project must be at the same path on every worker.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import Bucketizer, VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import drift
import store
from config import display_path
from datacontract import DataError, columns, parse_csv, row_end

ROOT = Path(__file__).resolve().parent
# Spark's approximate quantiles (the imputer's median, the profile's quantiles) are off by at most this share of
# the rows in rank: a hundred-thousandth of the rows, at a sketch of a few megabytes per column.
RANK_ERROR = 1e-5
PARTITION_ROWS = 250_000  # rows per partition of the logistic regression's input (see fit)
# Spark's L-BFGS stops at this relative change of the loss; tighter than sklearn's gradient tolerance, so the
# Spark fit lands at least as close to the common optimum.
TOLERANCE = 1e-10
# pyspark 4.3 warns on every pandas 3 conversion; the conversions this module uses (Arrow batches of numbers and
# text) are the ones its tests check.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
log = logging.getLogger("training")  # the step whose log says what the fit did


def session(cfg: dict[str, Any], step: str) -> SparkSession:
    """The process's SparkSession, started from the config's spark section on first use (said in the step's log)."""
    # Spark starts its Python workers with PYSPARK_PYTHON: this interpreter, whose venv has pandas and pyarrow;
    # they import the project's modules (this one, store, datacontract) from its folder.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    spark_cfg = cfg["spark"]
    builder = (SparkSession.builder.appName("dynamic-risk-assessment").master(spark_cfg["master"])
               .config("spark.driver.memory", spark_cfg["driver_memory"])
               .config("spark.executorEnv.PYTHONPATH", str(ROOT))
               .config("spark.ui.showConsoleProgress", "false"))
    for key, value in spark_cfg["conf"].items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")  # Spark's INFO and WARN lines would drown the step's own stderr
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()  # noqa: SLF001 - the JVM's own figure
    logging.getLogger(step).info("Spark %s on %s, driver heap %d MB", spark.version, spark_cfg["master"],
                                 heap // 2**20)
    return spark


def dataset(cfg: dict[str, Any], spark: SparkSession, manifest: dict[str, Any],
            index: dict[str, Any] | None = None, after: int = 0, labelled: bool = True) -> DataFrame:
    """The dataset's rows as store.read_dataset has them, read by Spark: every live labelled batch's kept rows, or
    only the rows first ingested after a batch id, of the labelled or the unlabelled batches (a drift check's new
    rows). The rows the index leaves out (duplicates: few) are named by batch file and position, and left out by an
    anti-join on Parquet's own row positions. Persisted: a fit reads it many times."""
    index = index if index is not None else store.load_index(cfg, manifest)
    names = [c for c in columns(cfg) if labelled or c != cfg["target_column"]]
    live = store.batches_read(manifest, after, labelled)
    if not live:
        schema = ", ".join(f"`{c}` {'string' if c == cfg['id_column'] else 'double'}" for c in names)
        return spark.createDataFrame([], schema)
    raw = spark.read.parquet(*[store.batch_path(cfg, b["id"]).as_uri() for b in live])
    dropped = [(store.batch_path(cfg, b["id"]).name, np.flatnonzero(~store.rows_read(index, b, after))) for b in live]
    left_out = pd.DataFrame({"_file": np.repeat([f for f, _ in dropped], [len(r) for _, r in dropped]),
                             "_row": np.concatenate([r for _, r in dropped]).astype(np.int64)})
    if len(left_out):
        placed = raw.select(*names, F.col("_metadata.file_name").alias("_file"),
                            F.col("_metadata.row_index").alias("_row"))
        raw = placed.join(spark.createDataFrame(left_out), ["_file", "_row"], "left_anti")
    # Kept for the process's later passes (a fit reads its data dozens of times) on local disk, written as it is
    # read: a memory cache builds whole partitions in the JVM's heap first, which runs out of it beyond memory
    # (the beyond-memory test saw it at 512 MB); the OS's page cache still serves these files from RAM it has.
    return raw.select(*names).persist(StorageLevel.DISK_ONLY)


def facts(cfg: dict[str, Any], data: DataFrame) -> dict[str, Any]:
    """What training says of its data before fitting: rows, the classes present, the exit rate and the feature
    columns without a single value, in one pass."""
    target, features = cfg["target_column"], cfg["feature_columns"]
    row = data.agg(F.count(F.lit(1)).alias("rows"), F.sum(target).alias("exits"),
                   *[F.count(f).alias(f"present_{i}") for i, f in enumerate(features)]).first()
    rows, exits = int(row["rows"]), int(row["exits"] or 0)
    return {"rows": rows, "exited_rate": exits / rows if rows else 0.0,
            "classes": [c for c, n in ((0, rows - exits), (1, exits)) if n],
            "empty": [f for i, f in enumerate(features) if row[f"present_{i}"] == 0]}


def summary(cfg: dict[str, Any], data: DataFrame) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """What diagnostics.summary_stats and missing_table say of a dataset, as Spark aggregates (one pass, and the
    exact medians): rows, per numeric column count/mean/median/std/min/max, per column missing count and percent."""
    numeric = [*cfg["feature_columns"], cfg["target_column"]]
    ident = cfg["id_column"]
    present = {c: F.when(~F.isnan(c), F.col(c)) for c in numeric}
    missing = {c: (F.col(c).isNull() | F.isnan(c)) for c in numeric}
    missing[ident] = F.col(ident).isNull() | (F.col(ident) == "")
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, c in enumerate(numeric):
        aggs += [F.count(present[c]).alias(f"n{i}"), F.mean(present[c]).alias(f"mean{i}"),
                 F.stddev_samp(present[c]).alias(f"std{i}"), F.min(present[c]).alias(f"min{i}"),
                 F.max(present[c]).alias(f"max{i}")]
    aggs += [F.sum(F.when(m, 1).otherwise(0)).alias(f"miss_{c}") for c, m in missing.items()]
    row = data.agg(*aggs).first()
    medians = exact_quantiles(data, numeric, np.array([0.5]))
    rows = int(row["rows"])
    stats = {}
    for i, c in enumerate(numeric):
        n = int(row[f"n{i}"])
        stats[c] = {"count": n, "mean": row[f"mean{i}"] if n else None,
                    "median": float(medians[c][0]) if n else None, "std": row[f"std{i}"] if n > 1 else None,
                    "min": row[f"min{i}"] if n else None, "max": row[f"max{i}"] if n else None}
    gaps = {}
    for c in columns(cfg):  # the frame's column order, as missing_table walks it
        count = int(row[f"miss_{c}"] or 0)
        gaps[c] = {"count": count, "percent": round(100 * count / rows, 4) if rows else 0.0}
    return rows, stats, gaps


def fit(cfg: dict[str, Any], data: DataFrame, pipeline: Any, rows: int) -> tuple[Any, dict[str, Any]]:
    """Fit the model on Spark and return it as the untrained scikit-learn pipeline (impute, scale, classify) with
    Spark's fitted parameters in it (the same artifact the pandas engine writes), and the reference profile: one
    pass of exact quantiles serves the imputer's medians and the profile."""
    features, target, m = cfg["feature_columns"], cfg["target_column"], cfg["model"]
    quantiles = exact_quantiles(data, features, np.concatenate([[0.5], drift.profile_levels()]))
    log.info("Spark: exact quantiles of %d features on %d rows", len(features), rows)
    slots = [f"_x{i}" for i in range(len(features))]  # positional names: a feature may be named anything
    statistics = fill_values(data, features, m["imputer_strategy"], [quantiles[f][0] for f in features])
    filled = data.na.fill(dict(zip(features, statistics, strict=True))).select(
        *[F.col(f).alias(s) for f, s in zip(features, slots, strict=True)], F.col(target).cast("double").alias("_y"))
    # sklearn's StandardScaler divides by the population standard deviation; Spark's by the sample one. The
    # moments are taken here, population-wise, and the logistic regression is fitted on standardized columns.
    moments = filled.agg(*[F.avg(s) for s in slots], *[F.var_pop(s) for s in slots]).first()
    mean = np.array(moments[:len(slots)], dtype=float)
    var = np.array(moments[len(slots):], dtype=float)
    scale = np.where(np.sqrt(var) < 10 * np.finfo(float).eps, 1.0, np.sqrt(var))  # as sklearn: constants stay
    z = [((F.col(s) - float(mu)) / float(sd)).alias(s) for s, mu, sd in zip(slots, mean, scale, strict=True)]
    standard = filled.select(*z, "_y", class_weights(filled, m["class_weight"], rows))
    # Spark's logistic regression stacks each partition's rows into blocks in the heap before it stores them:
    # partitions of at most PARTITION_ROWS keep that within a small heap (the beyond-memory test's 512 MB).
    vectors = VectorAssembler(inputCols=slots, outputCol="_features").transform(standard).select(
        "_features", "_y", "_w").repartition(max(2, -(-rows // PARTITION_ROWS))).persist(StorageLevel.DISK_ONLY)
    try:
        # sklearn minimizes C * sum(w * loss) + |coef|^2 / 2; Spark sum(w * loss) / sum(w) + regParam * |coef|^2
        # / 2. Balanced weights sum to the row count, so regParam = 1 / (rows * C) is the same optimum.
        lr = LogisticRegression(featuresCol="_features", labelCol="_y", weightCol="_w", family="binomial",
                                regParam=1.0 / (rows * m["C"]), elasticNetParam=0.0, standardization=False,
                                fitIntercept=True, maxIter=m["max_iter"], tol=TOLERANCE).fit(vectors)
    finally:
        vectors.unpersist()
    log.info("Spark fitted on %d rows in %d iterations", rows, lr.summary.totalIterations)
    return (exported(pipeline, features, statistics, mean, var, scale, lr, rows),
            profile(cfg, data, rows, {f: q[1:] for f, q in quantiles.items()}))


def fill_values(data: DataFrame, features: list[str], strategy: str, medians: list[float]) -> list[float]:
    """What SimpleImputer fills each feature's missing values with: the exact median (given: the mean of the two
    middle values for an even count, which Spark's Imputer does not give), the mean, or the most frequent value
    (the smallest of equally frequent ones)."""
    if strategy == "median":
        return [float(v) for v in medians]
    if strategy == "mean":
        return [float(v) for v in data.agg(*[F.avg(f) for f in features]).first()]
    return [float(data.where(F.col(f).isNotNull() & ~F.isnan(f)).groupBy(f).count()
                  .orderBy(F.desc("count"), F.asc(f)).first()[0]) for f in features]


def exact_quantiles(data: DataFrame, names: list[str], levels: np.ndarray) -> dict[str, np.ndarray]:
    """np.quantile of each column's values (missing ones left out) at levels, exactly, in bounded memory: Spark's
    approximate quantiles (one pass for all columns) bracket the order statistics each level needs; per column, one
    grouped pass counts the values between and at the brackets' ends, and a second brings only the few values
    strictly inside the brackets to this process."""
    cols = [f"_q{i}" for i in range(len(names))]
    clean = data.select(*[F.when(~F.isnan(c), F.col(c)).alias(q) for c, q in zip(names, cols, strict=True)])
    counts = clean.agg(*[F.count(q) for q in cols]).first()
    n = {q: int(counts[i]) for i, q in enumerate(cols)}
    at = {q: np.asarray(levels, dtype=float) * (n[q] - 1) for q in cols}  # numpy's "linear" method
    ranks = {q: (np.floor(at[q]).astype(np.int64), np.ceil(at[q]).astype(np.int64)) for q in cols}
    margin, out = 2 * RANK_ERROR, {name: np.full(len(levels), np.nan) for name in names}
    todo = [q for q in cols if n[q]]
    while todo:
        wanted = {q: np.clip(np.concatenate([ranks[q][0] / max(n[q] - 1, 1) - margin,
                                             ranks[q][1] / max(n[q] - 1, 1) + margin]), 0, 1) for q in todo}
        probs = sorted({float(p) for q in todo for p in wanted[q]})
        approx = dict(zip(todo, clean.approxQuantile(todo, probs, RANK_ERROR), strict=True))
        missed = []
        for q in todo:
            ends = np.array([dict(zip(probs, approx[q], strict=True))[float(p)] for p in wanted[q]])
            got = bracketed(clean.select(F.col(q).alias("v")).where(F.col("v").isNotNull()), ends, ranks[q], at[q])
            if got is None:
                missed.append(q)
            else:
                out[names[cols.index(q)]] = got
        todo, margin = missed, margin * 10  # a bracket missed its ranks: wider brackets, once more
    return out


def bracketed(values: DataFrame, ends: np.ndarray, ranks: tuple[np.ndarray, np.ndarray],
              at: np.ndarray) -> np.ndarray | None:
    """The quantiles at positions `at` (between order statistics ranks[0] and ranks[1]) of a column "v", given
    brackets [a, b] (ends: every a, then every b) that should hold those order statistics; None if one does not."""
    k = len(at)
    splits = np.unique(ends)
    # Bucket j holds splits[j] <= v < splits[j + 1] (bucket 0: below every split); a value equal to its bucket's
    # lower split is counted apart, so ranks are known at each split and on both sides of it.
    bounds = [-math.inf, *splits.tolist(), math.inf]
    bucket = Bucketizer(splits=bounds, inputCol="v", outputCol="_b").transform(values)
    lower = F.element_at(F.array(*[F.lit(float(x)) for x in bounds]), (F.col("_b") + 1).cast("int"))
    tallied = bucket.groupBy("_b").agg(F.count(F.lit(1)).alias("n"), F.count(F.when(F.col("v") == lower, 1))
                                       .alias("eq")).collect()
    size = np.zeros(len(bounds) - 1, dtype=np.int64)
    equal = np.zeros(len(bounds) - 1, dtype=np.int64)
    for row in tallied:
        size[int(row["_b"])], equal[int(row["_b"])] = row["n"], row["eq"]
    a, b = ends[:k], ends[k:]
    # Buckets whose values strictly above their lower split lie inside some bracket (a, b): those values come here.
    first, last = np.searchsorted(splits, a) + 1, np.searchsorted(splits, b) + 1  # the buckets of a and of b
    inside = sorted({j for lo, hi in zip(first, last, strict=True) for j in range(lo, hi)})
    window = np.sort(np.array([r[0] for r in bucket.where(F.col("_b").isin(inside) & (F.col("v") != lower))
                               .select("v").collect()], dtype=float)) if inside else np.empty(0)
    below = np.concatenate([[0], np.cumsum(size)])  # values below bounds[j] = below[j]
    result = []
    for j in range(k):
        at_splits = [(float(c), int(equal[i + 1])) for i, c in enumerate(splits) if a[j] <= c <= b[j]]
        run = sorted([*at_splits, *((v, 1) for v in window[(window > a[j]) & (window < b[j])])])
        start = int(below[first[j]])  # the values below a
        pair = [order_statistic(run, int(r) - start) for r in (ranks[0][j], ranks[1][j])]
        if None in pair:
            return None
        result.append(np.quantile(np.array(pair, dtype=float), at[j] - ranks[0][j]))
    return np.array(result)


def order_statistic(run: list[tuple[float, int]], rank: int) -> float | None:
    """The value at rank (from 0) of sorted values given as (value, repeats), or None when it is not among them."""
    if rank < 0:
        return None
    for value, repeats in run:
        if rank < repeats:
            return value
        rank -= repeats
    return None


def class_weights(filled: DataFrame, class_weight: str | None, rows: int) -> Any:
    """The "_w" column of row weights: 1, or sklearn's "balanced" rows / (2 * rows of the row's class)."""
    if class_weight is None:
        return F.lit(1.0).alias("_w")
    exits = filled.agg(F.sum("_y")).first()[0] or 0.0
    return F.when(F.col("_y") == 1.0, rows / (2.0 * exits)).otherwise(rows / (2.0 * (rows - exits))).alias("_w")


def exported(pipeline: Any, features: list[str], statistics: list[float], mean: np.ndarray, var: np.ndarray,
             scale: np.ndarray, lr: Any, rows: int) -> Any:
    """The scikit-learn pipeline with Spark's parameters: fitted first on two rows (so every attribute sklearn
    checks exists, feature names included), then given the imputer's statistics, the scaler's moments and the
    regression's coefficients."""
    pipeline.fit(pd.DataFrame({f: [0.0, 1.0] for f in features}), np.array([0, 1]))
    impute, scale_step, classify = (pipeline.named_steps[s] for s in ("impute", "scale", "classify"))
    impute.statistics_ = np.array(statistics, dtype=float)
    scale_step.mean_, scale_step.var_, scale_step.scale_ = mean, var, scale
    scale_step.n_samples_seen_ = rows
    classify.coef_ = lr.coefficients.toArray().reshape(1, -1)
    classify.intercept_ = np.array([lr.intercept])
    classify.n_iter_ = np.array([lr.summary.totalIterations], dtype=np.int32)
    return pipeline


def profile(cfg: dict[str, Any], data: DataFrame, rows: int, quantiles: dict[str, np.ndarray]) -> dict[str, Any]:
    """The reference profile (drift.reference_profile's, the same numbers) from each feature's exact quantiles at
    drift.profile_levels() and, in one pass, its values below each bin edge they give."""
    features = cfg["feature_columns"]
    edges = {f: drift.bin_edges(q) if not np.isnan(q).any() else np.empty(0) for f, q in quantiles.items()}
    counts = data.agg(*[F.count(f) for f in features],
                      *[F.count(F.when(F.col(f) < float(e), 1)) for f in features for e in edges[f]]).first()
    below, at = {}, len(features)
    for f in features:
        below[f], at = np.array(counts[at:at + len(edges[f])], dtype=np.int64), at + len(edges[f])
    return {"rows": rows, "features": {f: drift.profile_of(rows, int(counts[i]), quantiles[f], below[f])
                                       for i, f in enumerate(features)}}


def sample(data: DataFrame, rows: int, most: int) -> pd.DataFrame:
    """At most `most` rows of the data, drawn at random (seeded), as a pandas frame (training's calibration)."""
    part = data if rows <= most else data.sample(fraction=min(1.0, 1.1 * most / rows), seed=0).limit(most)
    return pd.DataFrame(part.toPandas())


def new_row_figures(cfg: dict[str, Any], spark: SparkSession, model: Any, profile: dict[str, Any],
                    manifest: dict[str, Any], after: int) -> dict[str, Any]:
    """drift.new_row_figures of the rows first ingested after a batch id, as Spark aggregates: the deployed model
    scores them on the workers (the same scikit-learn Pipeline, batch by batch), one pass counts the confusion, the
    expected counts and each feature's and the risk's values below the profile's edges and quantiles, and one
    ranged pass over every column's distinct values finds the CDF gaps (cdf_gaps). Nothing but the figures comes to
    this process."""
    features, target = cfg["feature_columns"], cfg["target_column"]
    index = store.load_index(cfg, manifest)
    labelled = dataset(cfg, spark, manifest, index, after)
    unlabelled = dataset(cfg, spark, manifest, index, after, labelled=False)
    rows = labelled.select(*features, F.col(target).cast("double").alias("_y")).unionByName(
        unlabelled.select(*features, F.lit(None).cast("double").alias("_y")))
    cal = profile.get("calibration")

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """The rows with the model's risk and its calibrated value (drift.new_row_figures' proba and p)."""
        for frame in frames:
            risk = model.predict_proba(frame[features])[:, 1] if len(frame) else np.empty(0)
            p = np.interp(risk, cal["x"], cal["y"]) if cal else risk
            yield frame.assign(_risk=risk, _p=p)

    types = ", ".join(f"`{f}` double" for f in features)
    scored = rows.mapInPandas(score, f"{types}, _y double, _risk double, _p double").persist(StorageLevel.DISK_ONLY)
    try:
        judged = {f: profile["features"][f] for f in features if (profile["features"].get(f) or {}).get("edges")}
        if (profile.get("risk") or {}).get("edges"):
            judged["_risk"] = profile["risk"]
        pred, y = F.col("_risk") > 0.5, F.col("_y")
        sums = [F.sum(F.when(pred, F.col("_p"))), F.sum(F.when(pred, 1 - F.col("_p"))),
                F.sum(F.when(~pred, F.col("_p"))), F.sum(F.when(pred, F.col("_p") * (1 - F.col("_p")))),
                F.sum(F.when(~pred, F.col("_p") * (1 - F.col("_p"))))]
        cells = ((y == 1) & pred, (y == 0) & pred, (y == 1) & ~pred, (y == 0) & ~pred)  # as drift.confusion
        aggs = [F.count(F.lit(1)), F.count(F.when(pred, 1)), *[F.count(F.when(c, 1)) for c in cells], *sums]
        for c, ref in judged.items():
            present = F.when(~F.isnan(c), F.col(c))
            aggs += [F.count(present), *[F.count(F.when(present < float(e), 1)) for e in ref["edges"]],
                     *[F.count(F.when(present <= float(q), 1)) for q in ref["quantiles"]]]
        got = list(scored.agg(*aggs).first())
        n_rows, predicted, confusion = int(got[0]), int(got[1]), np.array(got[2:6], dtype=np.int64)
        expected, at = np.array([float(v or 0.0) for v in got[6:11]]), 11
        present, below, upto = {}, {}, {}
        for c, ref in judged.items():
            present[c], at = int(got[at]), at + 1
            below[c], at = got[at:at + len(ref["edges"])], at + len(ref["edges"])
            upto[c], at = got[at:at + len(ref["quantiles"])], at + len(ref["quantiles"])
        gaps = cdf_gaps(scored, judged, present)
        counts = {c: drift.counts_of(ref, present[c], n_rows - present[c], below[c], upto[c], gaps[c])
                  for c, ref in judged.items()}
        return {"rows": n_rows, "labelled": confusion, "predicted": predicted,
                "expected": expected if cal else None,
                "features": {f: counts[f] for f in features if f in counts and n_rows},
                "risk": counts.get("_risk") if n_rows else None}
    finally:
        for frame in (scored, labelled, unlabelled):
            frame.unpersist()


def cdf_gaps(data: DataFrame, refs: dict[str, dict[str, Any]],
             present: dict[str, int]) -> dict[str, tuple[float, float]]:
    """drift.cdf_gaps of each column's present values against its reference, in one pass for all columns: the
    columns' distinct values with their counts, in ranges of (column, value) over the workers, each range's gaps
    with the counts below it left out; joined here in order of value."""
    names = [c for c in refs if present[c]]
    out = {c: (0.0, 0.0) for c in refs}
    if not names:
        return out
    stacked = data.select(F.explode(F.array(*[F.struct(F.lit(i).alias("c"), F.col(c).alias("v"))
                                              for i, c in enumerate(names)])).alias("s")).select("s.c", "s.v")
    # isnan(null) is false: both kinds of missing value are left out
    distinct = stacked.where(F.col("v").isNotNull() & ~F.isnan("v")).groupBy("c", "v").count()
    sizes = [present[c] for c in names]
    ref_list = [refs[c] for c in names]

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Sorted (column, value) runs: per column met, its first value, rows, and gaps as if nothing lay below."""
        seen: dict[int, list[Any]] = {}  # column -> [first, rows, high, low]
        for frame in frames:
            for c, part in frame.groupby("c", sort=False):
                state = seen.setdefault(int(c), [float(part["v"].iloc[0]), 0, -math.inf, math.inf])
                cum = state[1] + np.cumsum(part["count"].to_numpy())
                high, low = drift.cdf_gaps(ref_list[int(c)], part["v"].to_numpy(), cum, sizes[int(c)])
                state[1:] = [int(cum[-1]), max(state[2], high), min(state[3], low)]
        if seen:
            yield pd.DataFrame([[c, *state] for c, state in seen.items()],
                               columns=["c", "first", "rows", "high", "low"])

    ranges = sorted((r["c"], r["first"], r["rows"], r["high"], r["low"]) for r in
                    distinct.repartitionByRange("c", "v").sortWithinPartitions("c", "v")
                    .mapInPandas(run, "c int, first double, rows long, high double, low double").collect())
    below = dict.fromkeys(range(len(names)), 0)
    gaps = {i: (-math.inf, math.inf) for i in range(len(names))}
    for c, _, rows, high, low in ranges:  # a range's new CDF starts at the values of the ranges below it
        gaps[c] = (max(gaps[c][0], high + below[c] / sizes[c]), min(gaps[c][1], low + below[c] / sizes[c]))
        below[c] += rows
    return {**out, **{names[i]: g for i, g in gaps.items()}}


def write_batch(cfg: dict[str, Any], batch_id: int, path: Path, source: str, labelled: bool,
                row_hash: int) -> np.ndarray | None:
    """Read a data file on Spark's workers into the store's batch (store.write_batch's file: the same typed rows,
    hashes and format) and return its row hashes: the file is cut at row ends into pieces of about
    ingestion.chunk_bytes, each worker checks its pieces with the data contract's own reader (parse_csv) and writes
    them as Parquet parts, joined here in file order. None when a piece is refused or the file cannot be cut: the
    pandas engine's reader then reads it and words the verdict."""
    ranges = pieces(path, cfg["ingestion"]["chunk_bytes"])
    if ranges is None:
        return None
    parts = store.folder(cfg) / f"spark-parts-{batch_id:06d}"
    shutil.rmtree(parts, ignore_errors=True)  # a run killed before its commit left them
    parts.mkdir(parents=True)
    try:
        jobs = pd.DataFrame({"piece": range(len(ranges) - 1),
                             "start": [r[0] for r in ranges[1:]], "end": [r[1] for r in ranges[1:]]})
        spark = session(cfg, "ingestion")
        header, where = ranges[0], str(path)

        def parse(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            """Check and store each piece of the file; one row per piece: its rows, or -1 if refused."""
            for frame in frames:
                for piece, start, end in frame.itertuples(index=False):
                    rows = parse_piece(where, header, (start, end), parts, piece, cfg, source, labelled, row_hash)
                    yield pd.DataFrame({"piece": [piece], "rows": [rows]})

        done = (spark.createDataFrame(jobs).repartition(max(1, min(len(jobs), spark.sparkContext.defaultParallelism)))
                .mapInPandas(parse, "piece long, rows long").collect())
        if any(r["rows"] < 0 for r in done):
            return None
        written, batch = {"output_folder_path": parts}, store.batch_path(cfg, batch_id)
        with store.writing(display_path(cfg, batch)):  # the store's disk, not the file: the run fails instead
            return join_parts(batch, [store.batch_path(written, r["piece"]) for r in sorted(done) if r["rows"] > 0])
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def pieces(path: Path, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges ingestion.read_chunks cuts a data file into (the same windows, the same cuts): the header
    line's first, then the pieces (a file under size bytes: an empty header and the whole file). None when no cut
    can be made (no line end, a row longer than size): read_chunks then says so."""
    with open(path, "rb") as f:
        first = f.read(size)
        if len(first) < size:
            return [(0, 0), (0, len(first))]
        start = first.find(b"\n") + 1
        if start == 0:
            return None
        out, rest = [(0, start)], first[start:]
        while True:
            more = f.read(size)
            data = rest + more
            if not data:
                return out
            cut = row_end(data) if more else len(data)
            if cut == 0:
                return None
            out.append((start, start + cut))
            start, rest = start + cut, data[cut:]
            if not more:
                return out


def parse_piece(path: str, header: tuple[int, int], piece: tuple[int, int], parts: Path, number: int,
                cfg: dict[str, Any], source: str, labelled: bool, row_hash: int) -> int:
    """On a worker: check one piece of a data file (with its header) under the data contract and write it as a
    one-chunk batch of a store under parts (store.write_batch's own file); its rows, 0 for a blank piece, -1 when
    refused."""
    with open(path, "rb") as f:
        head = f.read(header[1] - header[0])
        f.seek(piece[0])
        body = f.read(piece[1] - piece[0])
    if not body.strip():
        return 0
    try:
        df = parse_csv(head + body, cfg, source, labelled)
    except (DataError, ValueError, UnicodeError, MemoryError):
        return -1
    store.write_batch({**cfg, "output_folder_path": parts}, number, [df], row_hash)
    return len(df)


def join_parts(path: Path, parts: list[Path]) -> np.ndarray | None:
    """Join batch files of one chunk each, in order, into one batch file as store.write_batch writes it (each
    chunk as written, the first one's schema, fsynced); its row hashes. None when there is no part."""
    if not parts:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes, writer = [], None
    try:
        for part in parts:
            table = pq.read_table(part)
            writer = writer or store.batch_writer(path, table.schema)
            writer.write_table(table)
            hashes.append(table.column(store.HASH).to_numpy())
    finally:
        if writer is not None:
            writer.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return np.concatenate(hashes)
