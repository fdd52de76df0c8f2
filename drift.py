"""Drift statistics: is the deployed model worse on new data, and do the features look different from training?

Model drift. The F1 of the deployed model on the new labelled rows is compared with a
threshold set by the rule: `raw` (the deployed score), `parametric` (mean - 2 std of past scores) or
`nonparametric` (Q1 - 1.5 IQR of past scores). F1 on a few rows is noisy, so a drop counts only when the whole
bootstrap interval of the new score lies more than `min_margin` below the threshold; "no drift" only when the
interval rules such a drop out. The bootstrap resamples the confusion-matrix counts (multinomial), which is
exactly a row bootstrap for F1 and costs nothing at a million rows. Too few rows, too few exits and predicted exits,
or an interval too wide to decide: "insufficient-data", and the rows wait for the next check.

Data drift. training.py saves a reference profile per feature (bin edges at the training deciles with their
shares, 101 quantiles, missing share), so a check never re-reads the training data. Per feature: PSI over those
bins (plus a missing-value bin) and the two-sample KS distance against the reference quantiles. Verdicts respect
sample size and hold their false-alarm rate per check: with m = 2 x features tests, PSI must exceed its noise floor
for this batch size (the 1 - alarm_rate/m quantile of the PSI of samples of that size drawn from the reference
shares themselves, widened for the reference's own sampling noise; the chi2(bins-1)/n approximation holds only for
large batches: at 30 rows empty bins alone push PSI past it) and KS must be significant (p < alarm_rate/m); each
must also reach a small minimum effect (psi_warn / ks_warn for WARN, psi_drift / ks_drift for DRIFT), so that a
shift too small to matter is not DRIFT at a million rows.

Both parts read figures of the new rows (new_row_figures: confusion counts, expected counts, per feature the values
below each bin edge and quantile and the CDF gaps), never the rows themselves, so the Spark engine can compute the
same figures where the rows lie (sparkengine.new_row_figures) and release_verdicts gives the same verdicts.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

QUANTILES = 101
DECILES = 10
EPS = 1e-4
FLOOR_SAMPLES = 4000  # no-shift samples drawn to find the PSI noise floor of a batch size


def feature_profile(values: np.ndarray) -> dict[str, Any]:
    """The reference profile of one feature's training values (NaN = missing)."""
    x = np.asarray(values, dtype="float64")
    present = np.sort(x[~np.isnan(x)])  # sorted once: every quantile and every bin count is read off it
    if present.size == 0:
        return profile_of(int(x.size), 0, np.empty(0), np.empty(0))
    quantiles = np.quantile(present, profile_levels())
    return profile_of(int(x.size), int(present.size), quantiles,
                      np.searchsorted(present, bin_edges(quantiles), side="left"))


def profile_levels() -> np.ndarray:
    """The quantile levels a profile is read from: the inner deciles (its bin edges), then QUANTILES levels."""
    return np.concatenate([np.linspace(0, 1, DECILES + 1)[1:-1], np.linspace(0, 1, QUANTILES)])


def bin_edges(quantiles: np.ndarray) -> np.ndarray:
    """A profile's bin edges: its distinct inner deciles."""
    return np.unique(quantiles[:DECILES - 1])


def profile_of(rows: int, present: int, quantiles: np.ndarray, below: np.ndarray) -> dict[str, Any]:
    """A feature's profile from its counts (rows, values present, values below each bin edge) and its quantiles at
    profile_levels(): what either engine computes, in one shape."""
    if present == 0:
        return {"rows": rows, "missing_rate": 1.0, "edges": [], "shares": [], "quantiles": []}
    # bin k holds edges[k-1] <= v < edges[k], as in psi()
    counts = np.diff(np.concatenate([[0], below, [present]]))
    return {
        "rows": rows,
        "missing_rate": float(1 - present / rows),
        "edges": bin_edges(quantiles).tolist(),
        "shares": (counts / present).tolist(),
        "quantiles": np.asarray(quantiles)[DECILES - 1:].tolist(),
    }


def reference_profile(df: Any, features: list[str]) -> dict[str, Any]:
    """Profiles of every feature of a training frame."""
    return {"rows": int(len(df)), "features": {f: feature_profile(df[f].to_numpy()) for f in features}}


def value_counts(ref: dict[str, Any], values: Any) -> dict[str, Any]:
    """What PSI and KS need of a feature's new values (NaN = missing) against its reference profile, as counts and
    the CDF gaps: the Spark engine computes the same figures as aggregates (sparkengine.new_row_figures)."""
    x = np.asarray(values, dtype="float64")
    missing = np.isnan(x)
    present = np.sort(x[~missing])  # sorted once, for every count
    # The new CDF at each distinct value is the count up to the last of its ties: read off the sorted values.
    last = np.append(present[1:] != present[:-1], True) if present.size else np.zeros(0, dtype=bool)
    return counts_of(ref, int(present.size), int(np.count_nonzero(missing)),
                     np.searchsorted(present, ref["edges"], side="left"),
                     np.searchsorted(present, ref["quantiles"], side="right"),
                     cdf_gaps(ref, present[last], np.flatnonzero(last) + 1, present.size))


def counts_of(ref: dict[str, Any], present: int, missing: int, below_edges: Any, upto_quantiles: Any,
              gaps: tuple[float, float]) -> dict[str, Any]:
    """A feature's new-value figures in one shape, from either engine: values present and missing, values below each
    bin edge, values at or below each reference quantile, and the largest and smallest new-minus-reference CDF gap
    at the distinct new values."""
    return {"present": present, "missing": missing, "below_edges": np.asarray(below_edges, dtype=np.int64),
            "upto_quantiles": np.asarray(upto_quantiles, dtype=np.int64), "gaps": gaps}


def reference_cdf(ref: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The reference CDF at values: linear between the profile's quantiles, 0 below and 1 above them."""
    q = np.asarray(ref["quantiles"])
    return np.interp(values, q, np.linspace(0, 1, q.size), left=0.0, right=1.0)


def cdf_gaps(ref: dict[str, Any], values: np.ndarray, upto: np.ndarray, n: int) -> tuple[float, float]:
    """The largest and smallest new CDF (upto / n at each distinct new value) minus the reference CDF; (0, 0) for no
    values. A part of the sorted values with the counts below it left out gives gaps to shift by them / n."""
    if not len(values) or not ref["quantiles"]:
        return 0.0, 0.0
    gap = upto / n - reference_cdf(ref, values)
    return float(np.max(gap)), float(np.min(gap))


def psi(profile: dict[str, Any], counts: dict[str, Any], level: float) -> tuple[float, float]:
    """PSI of new values (their value_counts) against a profile (decile bins + a missing bin), and its no-shift noise
    floor: the PSI that samples of this size from the reference exceed with probability level."""
    present, n = counts["present"], counts["present"] + counts["missing"]
    ref = np.append(np.asarray(profile["shares"]) * (1 - profile["missing_rate"]), profile["missing_rate"])
    # Bin k holds edges[k-1] <= v < edges[k]: its count is the difference of the values below its two edges.
    binned = np.diff(np.concatenate([[0], counts["below_edges"], [present]]))
    new = np.append(binned, counts["missing"]) / n
    value = float(_psi_of_shares(ref, new))
    # The floor: PSI of samples of n rows drawn from the reference shares (seeded: the same data, the same verdict),
    # times (1 + n/m) for the noise of the m-row reference sample itself (PSI ~ chi2 * (1/n + 1/m)).
    draws = np.random.default_rng(0).multinomial(n, ref / ref.sum(), size=FLOOR_SAMPLES) / n
    floor = float(np.quantile(_psi_of_shares(ref, draws), 1 - level)) * (1 + n / max(profile["rows"], 1))
    return value, floor


def _psi_of_shares(ref: np.ndarray, new: np.ndarray) -> np.ndarray:
    """PSI of share vectors (last axis) against the reference shares; an empty bin counts as EPS."""
    r, q = np.maximum(ref, EPS), np.maximum(new, EPS)
    return np.sum((q - r) * np.log(q / r), axis=-1)


def ks(profile: dict[str, Any], counts: dict[str, Any]) -> tuple[float, float]:
    """Two-sample KS distance of new values (their value_counts) against the reference quantiles, and its
    asymptotic p-value."""
    q, n = np.asarray(profile["quantiles"]), counts["present"]
    if n == 0 or q.size == 0:
        return 0.0, 1.0
    # The largest gap between the two CDFs: at each distinct new value, and at the reference quantiles.
    high, low = counts["gaps"]
    at_q = counts["upto_quantiles"] / n
    d = max(high, -low, float(np.max(np.abs(at_q - reference_cdf(profile, q)))))
    m = profile["rows"] * (1 - profile["missing_rate"])
    n_eff = n * m / (n + m) if m else n
    return d, kolmogorov_sf(d * math.sqrt(n_eff))


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (the KS test's asymptotic p-value)."""
    if lam < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def data_drift(profile: dict[str, Any], df: Any, features: list[str], t: dict[str, Any]) -> dict[str, Any]:
    """Per-feature PSI/KS with OK/WARN/DRIFT verdicts and the overall (worst) verdict, for a frame of new rows."""
    counts = {f: value_counts(profile["features"][f], df[f].to_numpy()) for f in features
              if _has_reference(profile, f) and len(df)}
    return data_verdicts(profile, counts, int(len(df)), features, t)


def _has_reference(profile: dict[str, Any], feature: str) -> bool:
    """Whether the profile can judge a feature: it has bins for it."""
    return bool((profile["features"].get(feature) or {}).get("edges"))


def data_verdicts(profile: dict[str, Any], counts: dict[str, dict[str, Any]], rows: int, features: list[str],
                  t: dict[str, Any]) -> dict[str, Any]:
    """data_drift from each feature's value_counts (absent: no reference or no rows). The false-alarm rate holds
    per check: each of the 2 x features tests is significant only at alarm_rate / (2 x features) (Bonferroni), so
    unchanged data says DRIFT in at most alarm_rate of checks, whatever the batch size and the number of features."""
    rank = {"OK": 0, "WARN": 1, "DRIFT": 2}
    level = t["alarm_rate"] / max(2 * len(features), 1)
    out = []
    for f in features:
        c = counts.get(f)
        if c is None:
            out.append({"feature": f, "verdict": "OK", "note": "no reference or no rows"})
            continue
        ref = profile["features"][f]
        p, floor = psi(ref, c, level)
        d, pval = ks(ref, c)
        psi_real, ks_real = p > floor, pval < level
        if (psi_real and p >= t["psi_drift"]) or (ks_real and d >= t["ks_drift"]):
            verdict = "DRIFT"
        elif (psi_real and p >= t["psi_warn"]) or (ks_real and d >= t["ks_warn"]):
            verdict = "WARN"
        else:
            verdict = "OK"
        out.append({"feature": f, "psi": round(p, 6), "psi_floor": round(floor, 6), "ks": round(d, 6),
                    "ks_pvalue": pval, "missing_rate": c["missing"] / (c["present"] + c["missing"]),
                    "verdict": verdict})
    worst = max((o["verdict"] for o in out), key=rank.__getitem__, default="OK")
    return {"verdict": worst, "features": out, "rows": rows}


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from confusion counts (0 where there is nothing to score, as sklearn's zero_division=0)."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """True positives, false positives, false negatives and true negatives of predictions."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return np.array([(y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum(), (~y & ~pred).sum()])


def bootstrap_f1(counts: np.ndarray, samples: int, confidence: float, seed: int = 0) -> tuple[float, float, float]:
    """F1 of predictions (their confusion counts) and its bootstrap interval (resampling rows = resampling the
    confusion counts)."""
    counts = np.asarray(counts)
    n = int(counts.sum())
    f1 = float(f1_from_counts(*counts[:3]))
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=samples)
    boot = f1_from_counts(draws[:, 0], draws[:, 1], draws[:, 2])
    alpha = (1 - confidence) / 2
    return f1, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def threshold(rule: str, deployed: float, past: list[float], min_history: int) -> tuple[str, float, str]:
    """The score below which the new score means drift, for a rule; falls back to raw without enough history."""
    if rule != "raw" and len(past) < min_history:
        return "raw", deployed, (f"rule {rule} needs {min_history} past scores, history has {len(past)}: "
                                 f"using raw")
    if rule == "parametric":
        a = np.asarray(past)
        return rule, float(a.mean() - 2 * a.std(ddof=1)), f"mean - 2 std of {len(past)} past scores"
    if rule == "nonparametric":
        q1, q3 = np.quantile(past, [0.25, 0.75])
        return rule, float(q1 - 1.5 * (q3 - q1)), f"Q1 - 1.5 IQR of {len(past)} past scores"
    return "raw", deployed, "the deployed score"


def model_drift(y: np.ndarray, pred: np.ndarray, deployed: float, past: list[float],
                t: dict[str, Any]) -> dict[str, Any]:
    """model_verdict of the deployed model's predictions on new labelled rows."""
    return model_verdict(confusion(y, pred), deployed, past, t)


def model_verdict(counts: np.ndarray, deployed: float, past: list[float], t: dict[str, Any]) -> dict[str, Any]:
    """Verdict drift / no-drift / insufficient-data from the confusion counts of the deployed model on new rows. A
    check is conclusive when the data can tell: enough rows, exits or predicted exits to score F1 on (a shift that
    makes exits rare while the model keeps predicting them collapses precision, and F1 with it), and an interval
    narrow enough to put the score below the threshold by more than the margin (drift) or within the margin of it
    (no-drift)."""
    tp, fp, fn, _ = (int(c) for c in counts)
    n, positives, predicted = int(np.sum(counts)), tp + fn, tp + fp
    if n < t["min_new_rows"] or max(positives, predicted) < t["min_new_positives"]:
        return {"verdict": "insufficient-data", "rule": t["rule"], "new_rows": n, "deployed_score": deployed,
                "reason": f"{n} new rows with {positives} exits and {predicted} predicted; a check needs at least "
                          f"{t['min_new_rows']} rows and {t['min_new_positives']} exits or predicted exits (they "
                          f"count toward the next check)"}
    rule, limit, how = threshold(t["rule"], deployed, past, t["min_history"])
    f1, lo, hi = bootstrap_f1(counts, t["bootstrap_samples"], t["confidence"])
    base = {"rule": rule, "new_rows": n, "new_score": f1, "ci_low": lo, "ci_high": hi, "deployed_score": deployed,
            "threshold": limit}
    interval = f"F1 {f1:.3f} on {n:,} new rows ({t['confidence']:.0%} interval {lo:.3f}-{hi:.3f})"
    # One boundary, the threshold less the margin: drift when the whole interval is below it, no drift when the
    # whole interval is above it; between the two the rows wait for more (a wait that never lowers the bar).
    if hi < limit - t["min_margin"]:
        return {**base, "verdict": "drift",
                "reason": f"{interval} is below {limit:.3f} ({how}) by more than noise and the "
                          f"{t['min_margin']:.3f} margin"}
    if lo < limit - t["min_margin"]:  # could be a drop beyond the margin, could be noise
        return {**base, "verdict": "insufficient-data",
                "reason": f"{interval} is too wide to decide against {limit:.3f} ({how}) with the "
                          f"{t['min_margin']:.3f} margin (the rows count toward the next check)"}
    why = "not below" if f1 >= limit else "within noise of" if hi >= limit else "less than the margin below"
    return {**base, "verdict": "no-drift", "reason": f"{interval} is {why} {limit:.3f} ({how})"}


def new_row_figures(cfg: dict[str, Any], model: Any, profile: dict[str, Any], new: Any,
                    unlabelled: Any = None) -> dict[str, Any]:
    """What a check needs of new rows, as counts and sums (the Spark engine computes the same figures as aggregates,
    sparkengine.new_row_figures): the deployed model's confusion counts on the labelled rows, the label-free
    estimate's expected counts and each feature's and the predicted risk's value_counts on all of them."""
    import pandas as pd
    feats = cfg["feature_columns"]
    rows = new[feats] if unlabelled is None or not len(unlabelled) else \
        pd.concat([new[feats], unlabelled[feats]], ignore_index=True)
    proba = model.predict_proba(rows)[:, 1] if len(rows) else np.empty(0)
    pred = proba > 0.5  # what model.predict says: a logistic regression's cut is 0.5
    cal = profile.get("calibration")
    return {"rows": int(len(rows)), "labelled": confusion(new[cfg["target_column"]].to_numpy(), pred[:len(new)]),
            "predicted": int(np.count_nonzero(pred)),
            "expected": expected_counts(np.interp(proba, cal["x"], cal["y"]), pred) if cal else None,
            "features": {f: value_counts(profile["features"][f], rows[f].to_numpy()) for f in feats
                         if _has_reference(profile, f) and len(rows)},
            "risk": value_counts(profile["risk"], proba) if profile.get("risk", {}).get("edges") and len(rows)
            else None}


def release_verdicts(cfg: dict[str, Any], profile: dict[str, Any], deployed: float, past: list[float],
                     figures: dict[str, Any]) -> dict[str, Any]:
    """A release on new rows, from their figures (either engine's): model drift on the labelled ones; data drift,
    prediction drift and the label-free performance estimate on all of them; the exit rate of the labelled ones."""
    feats, t = cfg["feature_columns"], cfg["drift"]
    data = data_verdicts(profile, figures["features"], figures["rows"], feats, t)
    return {**model_verdict(figures["labelled"], deployed, past, t), "data_verdict": data["verdict"],
            "features": data["features"], "unlabelled_rows": figures["rows"] - int(np.sum(figures["labelled"])),
            "estimated": estimate_verdict(profile, figures, t), "prediction": risk_verdict(profile, figures, t),
            "prior": prior_shift(profile, figures["labelled"], t)}


# ---------------------------------------------------------------- without labels (and what the labels alone say)
# Estimated performance follows the idea of confidence-based performance estimation (CBPE): with probabilities
# that are calibrated (a predicted 0.3 exits 30% of the time), each row's expected contribution to the confusion
# matrix is known without its label, and so is the F1 to expect. training.py saves the calibration, fitted on
# cross-validated probabilities of the training data, in the reference profile.


def calibration(proba: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """What the label-free checks need from training: an isotonic map from the model's probabilities to observed
    exit rates (fitted on cross-validated probabilities), the profile of predicted risk and the exit rate."""
    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(proba, y)
    cal = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    est = expected_counts(np.interp(proba, cal["x"], cal["y"]), proba > 0.5)
    return {"calibration": cal, "risk": feature_profile(proba), "exit_rate": float(np.mean(y)),
            "estimated_f1": float(f1_from_counts(*est[:3])), "predicted_rate": float(np.mean(proba > 0.5))}


def expected_counts(p: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Expected true positives, false positives, false negatives and their variances, from calibrated p."""
    pred = pred.astype(bool)
    return np.array([np.sum(p[pred]), np.sum(1 - p[pred]), np.sum(p[~pred]),
                     np.sum(p[pred] * (1 - p[pred])), np.sum(p[~pred] * (1 - p[~pred]))])


def estimate_performance(profile: dict[str, Any], proba: np.ndarray, t: dict[str, Any]) -> dict[str, Any]:
    """estimate_verdict for the deployed model's probabilities on rows without their labels."""
    cal, pred = profile.get("calibration"), np.asarray(proba) > 0.5
    return estimate_verdict(profile, {"rows": int(len(proba)), "predicted": int(np.count_nonzero(pred)),
                                      "expected": expected_counts(np.interp(proba, cal["x"], cal["y"]), pred)
                                      if cal else None}, t)


def estimate_verdict(profile: dict[str, Any], figures: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    """Estimated F1, precision and recall of the deployed model on rows without their labels, with an interval
    (the spread of labels the calibrated probabilities allow), against the F1 the same estimate gave on the training
    data: verdict "drop" when the whole interval lies more than min_margin below it, "no-drop" when it lies above
    that, else "insufficient-data". From new_row_figures: rows, predicted exits and expected counts."""
    ref = profile.get("estimated_f1")
    n = figures["rows"]
    if "calibration" not in profile:
        return {"verdict": "insufficient-data", "rows": n, "reference": ref,
                "reason": "the release was trained without a calibration (before estimates existed): retrain"}
    if n < t["min_new_rows"]:
        return {"verdict": "insufficient-data", "rows": n, "reference": ref,
                "reason": f"{n} rows; an estimate needs at least {t['min_new_rows']} (they count toward the next)"}
    tp, fp, fn, var_tp, var_fn = figures["expected"]
    predicted = figures["predicted"]
    f1 = float(f1_from_counts(tp, fp, fn))
    # Labels drawn as the probabilities say: TP and FN vary independently (disjoint rows); FP = predicted - TP.
    draws = np.random.default_rng(0).normal(size=(t["bootstrap_samples"], 2))
    tp_d = np.clip(tp + draws[:, 0] * np.sqrt(var_tp), 0, predicted)
    fn_d = np.clip(fn + draws[:, 1] * np.sqrt(var_fn), 0, None)
    boot = f1_from_counts(tp_d, predicted - tp_d, fn_d)
    alpha = (1 - t["confidence"]) / 2
    lo, hi = float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))
    base = {"f1": f1, "precision": float(tp / max(tp + fp, 1e-12)), "recall": float(tp / max(tp + fn, 1e-12)),
            "rows": n, "ci_low": lo, "ci_high": hi, "reference": ref}
    said = f"estimated F1 {f1:.3f} on {n:,} rows ({t['confidence']:.0%} interval {lo:.3f}-{hi:.3f})"
    if hi < ref - t["min_margin"]:
        return {**base, "verdict": "drop", "reason": f"{said} is below the {ref:.3f} estimated on the training data "
                                                     f"by more than noise and the {t['min_margin']:.3f} margin"}
    if lo < ref - t["min_margin"]:
        return {**base, "verdict": "insufficient-data", "reason": f"{said} is too wide to decide against {ref:.3f}"}
    return {**base, "verdict": "no-drop", "reason": f"{said} is within the margin of {ref:.3f}"}


def risk_verdict(profile: dict[str, Any], figures: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    """Has the distribution of predicted risk moved from training's? PSI and KS as for a feature, OK/WARN/DRIFT."""
    if "risk" not in profile:
        return {"verdict": "OK", "note": "the release has no risk profile"}
    counts = {"risk": figures["risk"]} if figures["risk"] is not None else {}
    result = data_verdicts({"features": {"risk": profile["risk"]}}, counts, figures["rows"], ["risk"], t)
    return {**result["features"][0], "rows": result["rows"]}


def prior_shift(profile: dict[str, Any], counts: np.ndarray, t: dict[str, Any]) -> dict[str, Any]:
    """Has the exit rate of the labelled new rows (their confusion counts) moved from training's? A two-sided
    binomial z-test at the alarm rate, and a change of at least a fifth of the training rate for DRIFT."""
    tp, _, fn, _ = (int(c) for c in counts)
    n, rate = int(np.sum(counts)), profile.get("exit_rate")
    if rate is None or n == 0:
        return {"verdict": "OK", "rows": n, "note": "no labelled rows or no training rate"}
    new = (tp + fn) / n
    z = (new - rate) / math.sqrt(max(rate * (1 - rate), 1e-12) / n)
    p = math.erfc(abs(z) / math.sqrt(2))
    verdict = "DRIFT" if p < t["alarm_rate"] and abs(new - rate) >= 0.2 * rate else \
        "WARN" if p < t["alarm_rate"] else "OK"
    return {"verdict": verdict, "rows": n, "exit_rate": new, "reference": rate, "pvalue": p}
