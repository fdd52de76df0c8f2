"""Drift statistics: each rule's decision on crafted scores, and how often the checks
fire by chance alone versus on a real shift. Everything here calls drift.py directly on real numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

import drift
import generate_data
import scoring
import training
from datacontract import read_data_file

ROOT = Path(__file__).resolve().parents[1]


def labels(tp: int, fp: int, fn: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    """True labels and predictions with exactly these confusion counts (F1 = 2tp / (2tp + fp + fn))."""
    y = np.array([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    pred = np.array([1] * tp + [1] * fp + [0] * fn + [0] * tn)
    return y, pred


def settings(cfg: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The workspace's drift settings with some changed."""
    return {**cfg["drift"], **overrides}


# ---------------------------------------------------------------- the rules, on crafted score histories

def test_raw_rule_compares_with_the_deployed_score(cfg):
    rule, limit, how = drift.threshold("raw", 0.8, [0.1, 0.2], cfg["drift"]["min_history"])
    assert (rule, limit) == ("raw", 0.8)
    assert "deployed" in how
    y, pred = labels(tp=250, fp=250, fn=250, tn=250)           # F1 0.5 on 1,000 rows: far below 0.8
    check = drift.model_drift(y, pred, 0.8, [], settings(cfg, rule="raw"))
    assert check["verdict"] == "drift"
    assert check["rule"] == "raw" and check["threshold"] == 0.8
    assert check["new_score"] == pytest.approx(0.5)
    assert check["ci_high"] < 0.8


def test_parametric_rule_uses_mean_minus_two_standard_deviations(cfg):
    past = [0.7, 0.8, 0.9, 0.8, 0.8]                             # mean 0.8, sample std sqrt(0.005)
    expected = 0.8 - 2 * np.sqrt(0.005)                          # 0.6586
    rule, limit, how = drift.threshold("parametric", 0.95, past, 5)
    assert rule == "parametric" and limit == pytest.approx(expected)
    assert "mean - 2 std of 5" in how
    t = settings(cfg, rule="parametric", min_history=5)
    y, pred = labels(tp=350, fp=150, fn=150, tn=350)             # F1 0.7: far below the 0.95 deployed score...
    assert drift.model_drift(y, pred, 0.95, past, settings(cfg, rule="raw"))["verdict"] == "drift"
    keep = drift.model_drift(y, pred, 0.95, past, t)             # ...but not below what past batches scored
    assert keep["verdict"] == "no-drift" and keep["rule"] == "parametric"
    assert keep["threshold"] == pytest.approx(expected)
    y, pred = labels(tp=200, fp=300, fn=300, tn=200)             # F1 0.4: below mean - 2 sd
    assert drift.model_drift(y, pred, 0.95, past, t)["verdict"] == "drift"


def test_nonparametric_rule_uses_q1_minus_one_and_a_half_iqr(cfg):
    past = [0.70, 0.75, 0.80, 0.85, 0.90, 0.10]                  # one outlier; Q1 0.7125, Q3 0.8375
    q1, q3 = 0.7125, 0.8375
    rule, limit, how = drift.threshold("nonparametric", 0.95, past, 5)
    assert rule == "nonparametric" and limit == pytest.approx(q1 - 1.5 * (q3 - q1))   # 0.525
    assert "Q1 - 1.5 IQR of 6" in how
    # The outlier drags mean - 2 sd far down; the quartiles ignore it.
    assert drift.threshold("parametric", 0.95, past, 5)[1] < 0.3
    t = settings(cfg, rule="nonparametric", min_history=5)
    y, pred = labels(tp=200, fp=300, fn=300, tn=200)             # F1 0.4 < 0.525
    check = drift.model_drift(y, pred, 0.95, past, t)
    assert check["verdict"] == "drift" and check["rule"] == "nonparametric"
    assert drift.model_drift(y, pred, 0.95, past, settings(cfg, rule="parametric", min_history=5))["verdict"] \
        == "no-drift"


@pytest.mark.parametrize("rule", ["parametric", "nonparametric"])
def test_short_history_falls_back_to_raw_and_says_why(cfg, rule):
    past = [0.9, 0.9, 0.9]
    used, limit, how = drift.threshold(rule, 0.8, past, 5)
    assert (used, limit) == ("raw", 0.8)
    assert f"rule {rule} needs 5 past scores, history has 3" in how
    y, pred = labels(tp=250, fp=250, fn=250, tn=250)
    check = drift.model_drift(y, pred, 0.8, past, settings(cfg, rule=rule, min_history=5))
    assert check["verdict"] == "drift" and check["rule"] == "raw"
    assert "needs 5 past scores" in check["reason"]


def test_too_few_rows_or_exits_is_insufficient_data(cfg):
    t = settings(cfg, min_new_rows=50, min_new_positives=5)
    y, pred = labels(tp=0, fp=20, fn=20, tn=9)                   # 49 rows, F1 0: as bad as it gets
    check = drift.model_drift(y, pred, 0.9, [], t)
    assert check["verdict"] == "insufficient-data"
    assert "49 new rows" in check["reason"] and "count toward the next check" in check["reason"]
    y, pred = labels(tp=0, fp=2, fn=2, tn=996)                   # 1,000 rows, 2 exits and 2 predicted
    check = drift.model_drift(y, pred, 0.9, [], t)
    assert check["verdict"] == "insufficient-data" and "2 exits and 2 predicted" in check["reason"]
    # Exits became rare while the model keeps predicting them: 4 exits, 40 predicted, F1 0. The predicted exits
    # make the check conclusive: waiting for five real exits would wait through the collapse.
    y, pred = labels(tp=0, fp=40, fn=4, tn=956)
    assert drift.model_drift(y, pred, 0.9, [], t)["verdict"] == "drift"


def test_a_drop_within_the_bootstrap_noise_is_not_drift(cfg):
    # 60 rows, F1 0.70 against a deployed 0.80: a drop of 0.10 (twice the margin) but within the noise.
    y, pred = labels(tp=14, fp=6, fn=6, tn=34)
    check = drift.model_drift(y, pred, 0.8, [], settings(cfg, rule="raw", min_margin=0.05))
    assert check["new_score"] == pytest.approx(0.7)
    assert check["verdict"] == "insufficient-data"  # neither a drop nor its absence is shown: the rows wait
    assert check["ci_high"] >= 0.8 and "too wide to decide" in check["reason"]
    # The same F1 on 6,000 rows is a real drop.
    y, pred = labels(tp=1400, fp=600, fn=600, tn=3400)
    assert drift.model_drift(y, pred, 0.8, [], settings(cfg, rule="raw", min_margin=0.05))["verdict"] == "drift"


def test_a_drop_smaller_than_the_margin_is_not_drift(cfg):
    # 200,000 rows: F1 0.78 against 0.80 is certainly lower (tight interval) but only by 0.02.
    y, pred = labels(tp=39000, fp=11000, fn=11000, tn=139000)
    check = drift.model_drift(y, pred, 0.8, [], settings(cfg, rule="raw", min_margin=0.05))
    assert check["new_score"] == pytest.approx(0.78)
    assert check["ci_high"] < 0.8
    assert check["verdict"] == "no-drift" and "less than the margin" in check["reason"]
    assert drift.model_drift(y, pred, 0.8, [], settings(cfg, rule="raw", min_margin=0.01))["verdict"] == "drift"


# ---------------------------------------------------------------- behaviour over many checks

def simulate(cfg: dict[str, Any], model: Any, deployed: float, stream: pd.DataFrame, rule: str,
             past: list[float] | None = None, batch: int = 20) -> tuple[list[dict[str, Any]], list[float]]:
    """Feed the stream in batches as cron ticks would, keeping rows of inconclusive checks for the next one
    (as fullprocess does) and the scores of conclusive checks as the past-score history. Returns the conclusive
    checks and the history."""
    t = settings(cfg, rule=rule)
    feats, target = cfg["feature_columns"], cfg["target_column"]
    past = list(past or [])
    ys: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    checks = []
    for start in range(0, len(stream) - batch + 1, batch):
        rows = stream.iloc[start:start + batch]
        ys.append(rows[target].to_numpy())
        preds.append(model.predict(rows[feats]))
        check = drift.model_drift(np.concatenate(ys), np.concatenate(preds), deployed, past, t)
        if check["verdict"] == "insufficient-data":
            continue
        checks.append(check)
        past.append(check["new_score"])
        ys, preds = [], []
    return checks, past


@pytest.fixture(scope="module")
def healthy() -> dict[str, Any]:
    """A model trained on the source period, its score on a test sample of that period, and 200 fresh batches."""
    from config import load_config
    cfg = load_config(ROOT / "config.json")
    rng = np.random.default_rng(20261127)
    train = generate_data.clients(rng, 3000, "new")
    model = training.build_pipeline(cfg).fit(train[cfg["feature_columns"]], train[cfg["target_column"]])
    deployed = scoring.metrics(model, generate_data.clients(rng, 2000, "new"), cfg)["f1"]
    return {"model": model, "deployed": deployed, "stream": generate_data.clients(rng, 200 * 20, "new")}


@pytest.mark.parametrize("rule", ["raw", "parametric", "nonparametric"])
def test_an_unchanged_model_rarely_triggers_drift(cfg, healthy, rule):
    checks, _ = simulate(cfg, healthy["model"], healthy["deployed"], healthy["stream"], rule)
    # A check is conclusive once its interval rules a drop beyond the margin in or out: every few hundred rows here
    assert len(checks) >= 10, "200 batches of 20 rows must give a dozen conclusive checks"
    fired = sum(c["verdict"] == "drift" for c in checks)
    assert fired / len(checks) < 0.05, f"{fired} of {len(checks)} checks called drift on an unchanged model"
    # The course's bare comparison (a batch's score lower than the deployed one) fires on a large share of the same
    # 20-row batches: the interval and the margin are what keep them quiet.
    feats, target = cfg["feature_columns"], cfg["target_column"]
    batches = [healthy["stream"].iloc[i:i + 20] for i in range(0, len(healthy["stream"]), 20)]
    bare = sum(f1_score(b[target], healthy["model"].predict(b[feats]), zero_division=0) < healthy["deployed"]
               for b in batches)
    assert bare / len(batches) > 0.25


@pytest.mark.parametrize("rule", ["raw", "parametric", "nonparametric"])
def test_the_practice_model_on_source_rows_is_caught(cfg, healthy, rule):
    """The shipped drift story in 20-row ticks: the model trained on practicedata, fed the source-period clients
    after a healthy stretch that built its past-score history."""
    practice = pd.concat([read_data_file(p, cfg) for p in sorted((ROOT / "practicedata").glob("*.csv"))])
    feats, target = cfg["feature_columns"], cfg["target_column"]
    model = training.build_pipeline(cfg).fit(practice[feats], practice[target])
    deployed = scoring.metrics(model, scoring.read_test_data(cfg), cfg)["f1"]
    rng = np.random.default_rng(7)
    before, past = simulate(cfg, model, deployed, generate_data.clients(rng, 600, "old"), rule)
    assert before and all(c["verdict"] == "no-drift" for c in before)
    source = pd.concat([read_data_file(p, cfg) for p in sorted((ROOT / "sourcedata").glob("*.csv"))],
                       ignore_index=True)
    after, _ = simulate(cfg, model, deployed, source.iloc[:600], rule, past)
    assert after
    first_drift = next((i for i, c in enumerate(after) if c["verdict"] == "drift"), None)
    assert first_drift is not None and first_drift <= 2, [c["reason"] for c in after[:3]]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """A reference profile of 5,000 source-period clients, as training.py saves it."""
    from config import load_config
    cfg = load_config(ROOT / "config.json")
    rng = np.random.default_rng(11)
    return drift.reference_profile(generate_data.clients(rng, 5000, "new"), cfg["feature_columns"])


def test_data_drift_is_quiet_on_thirty_rows_of_the_same_distribution(cfg, reference):
    rng = np.random.default_rng(1)
    results = [drift.data_drift(reference, generate_data.clients_fast(rng, 30, "new"), cfg["feature_columns"],
                                cfg["drift"]) for _ in range(300)]
    ok = sum(r["verdict"] == "OK" for r in results)
    assert ok >= 0.9 * len(results), f"only {ok} of {len(results)} same-distribution samples of 30 rows were OK"
    # Bare PSI thresholds would flag nearly every one of them: the noise floor is doing the work.
    bare = sum(max(f["psi"] for f in r["features"]) >= cfg["drift"]["psi_drift"] for r in results)
    assert bare >= 0.5 * len(results)


def test_data_drift_is_quiet_on_a_hundred_thousand_rows_of_the_same_distribution(cfg, reference):
    rng = np.random.default_rng(2)
    verdicts = [drift.data_drift(reference, generate_data.clients_fast(rng, 100_000, "new"),
                                 cfg["feature_columns"], cfg["drift"])["verdict"] for _ in range(5)]
    assert verdicts.count("OK") >= 4, verdicts


def test_a_real_shift_at_a_thousand_rows_is_drift(cfg):
    rng = np.random.default_rng(3)
    feats = cfg["feature_columns"]
    practice = drift.reference_profile(generate_data.clients(rng, 1100, "old"), feats)
    result = drift.data_drift(practice, generate_data.clients(rng, 1000, "new"), feats, cfg["drift"])
    assert result["verdict"] == "DRIFT"
    assert all(f["verdict"] == "DRIFT" for f in result["features"])
    # One feature shifted by one standard deviation, the others unchanged: only it is named.
    base = rng.normal(100, 10, (5000, 2))
    ref = drift.reference_profile(pd.DataFrame(base, columns=["a", "b"]), ["a", "b"])
    new = pd.DataFrame({"a": rng.normal(110, 10, 1000), "b": rng.normal(100, 10, 1000)})
    by_feature = {f["feature"]: f["verdict"] for f in drift.data_drift(ref, new, ["a", "b"], cfg["drift"])["features"]}
    assert by_feature == {"a": "DRIFT", "b": "OK"}


def test_a_tiny_shift_at_a_million_rows_is_not_drift(cfg):
    """KS calls a 0.02-sigma shift significant at a million rows; the minimum effect size keeps it OK."""
    rng = np.random.default_rng(4)
    ref = drift.reference_profile(pd.DataFrame({"a": rng.normal(100, 10, 1_000_000)}), ["a"])
    result = drift.data_drift(ref, pd.DataFrame({"a": rng.normal(100.2, 10, 1_000_000)}), ["a"], cfg["drift"])
    (feature,) = result["features"]
    assert feature["ks_pvalue"] < cfg["drift"]["alarm_rate"] / 2, "the shift is statistically detectable"
    assert result["verdict"] == "OK"


@pytest.mark.parametrize("rows", [20, 100])
def test_data_drift_false_alarms_stay_within_the_alarm_rate_across_all_features(cfg, reference, rows):
    """300 checks of unchanged data: DRIFT, all features and both statistics together, at most drift.alarm_rate."""
    rng = np.random.default_rng(rows)
    verdicts = [drift.data_drift(reference, generate_data.clients_fast(rng, rows, "new"), cfg["feature_columns"],
                                 cfg["drift"])["verdict"] for _ in range(300)]
    assert verdicts.count("DRIFT") / len(verdicts) <= cfg["drift"]["alarm_rate"], verdicts.count("DRIFT")


@pytest.mark.parametrize(("rows", "shift"), [(100, 0.5), (1000, 0.25)])
def test_data_drift_catches_a_covariate_shift_nine_times_in_ten(cfg, reference, rows, shift):
    """Every feature moved by a share of its standard deviation: caught in at least 90% of 100 checks."""
    rng = np.random.default_rng(rows)
    feats = cfg["feature_columns"]
    sd = generate_data.clients_fast(np.random.default_rng(0), 20_000, "new")[feats].std()
    caught = 0
    for _ in range(100):
        batch = generate_data.clients_fast(rng, rows, "new")
        batch[feats] = batch[feats] + shift * sd
        caught += drift.data_drift(reference, batch, feats, cfg["drift"])["verdict"] == "DRIFT"
    assert caught >= 90, caught
