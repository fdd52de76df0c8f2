"""The report a manager reads: confusion matrix, ROC curve, trends and tables of the deployed release, as a PDF.

    python reporting.py              # writes models/confusionmatrix.png, models/roccurve.png, reports/report.pdf
    python reporting.py --json

The PDF holds: the release, when and on what data it was trained, and one line saying what the system did about the
latest drift check; F1, precision, recall, accuracy, ROC AUC; the confusion matrix and ROC curve; the clients to
call first (highest risk among the latest ingested rows); the latest drift check with per-feature PSI/KS and the
decision taken; the latest alerts sent; time trends from the history store (score per release, step timings per
run, missing data, data drift and realized against estimated F1 per check); summary statistics and missing-data
tables; step timings; the dependency table; the ingested and rejected files. Every page carries the date and its
page number. reports/report.pdf is replaced atomically, and a dated copy of each report is kept
(reporting.reports_kept of them).
"""
from __future__ import annotations

import io
import logging
from datetime import datetime, timezone
from html import escape  # reportlab paragraphs are markup: a '<' in a file name must stay text
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns

# Figures are made with matplotlib's Figure directly, not pyplot: no GUI backend is chosen (none exists under cron)
# and no global figure state is kept between reports.
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

import cli
import diagnostics
import releases
import reportdata
from artifacts import CONFUSION, REPORT, ROC
from atomicio import atomic_file, atomic_write
from config import display_path, load_config
from modelstore import ModelError
from reportdata import number, percent, record_int
from scoring import metrics, read_test_data

log = logging.getLogger("reporting")

STYLES = getSampleStyleSheet()
STYLES["Heading2"].keepWithNext = 1  # a heading never ends a page alone
GRID = TableStyle([("FONT", (0, 0), (-1, -1), "Helvetica", 8), ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
                   ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6f0")),
                   ("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
                   ("VALIGN", (0, 0), (-1, -1), "MIDDLE")])
TREND_ROW_INCHES = 3.0  # height of one row of two trend charts


def png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()


def confusion_png(confusion: list[list[int]], release: int, f1: float) -> bytes:
    """Seaborn heatmap of the confusion matrix (scoring.metrics' "confusion") with counts and percentages."""
    cm_ = np.array(confusion)
    pct = cm_ / max(cm_.sum(), 1)
    labels = np.array([[f"{c:,}\n{p:.1%}" for c, p in zip(row, prow, strict=True)]
                       for row, prow in zip(cm_, pct, strict=True)])
    fig = Figure(figsize=(4.6, 3.8))
    ax = fig.subplots()
    sns.heatmap(cm_, annot=labels, fmt="", cmap="Blues", cbar=False, ax=ax, annot_kws={"size": 12},
                xticklabels=["stayed (0)", "exited (1)"], yticklabels=["stayed (0)", "exited (1)"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"Release {release}: confusion matrix on test data (F1 {f1:.3f})", fontsize=10)
    return png(fig)


def roc_png(roc: dict[str, list[float]] | None, auc: float | None) -> bytes:
    """The ROC curve of the deployed model on the test data (scoring.metrics' "roc" points)."""
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.subplots()
    if roc:
        ax.plot(roc["fpr"], roc["tpr"], color="#1f5a96", lw=2, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve on test data", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return png(fig)


def trend_png(charts: list[dict[str, Any]]) -> bytes | None:
    """The trend charts (reportdata.trend_series) on one figure, two per row; None when there is no history yet."""
    if not any(c["series"] for c in charts):
        return None
    rows = -(-len(charts) // 2)
    fig = Figure(figsize=(9, TREND_ROW_INCHES * rows))
    axes = fig.subplots(rows, 2, squeeze=False).flat
    for ax in axes[len(charts):]:  # an odd chart count leaves the last cell empty
        ax.set_visible(False)
    for ax, chart in zip(axes, charts, strict=False):
        for name, pts in chart["series"].items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=name)
        ax.set_title(chart["title"], fontsize=9)
        ax.set_xlabel(chart["x_label"], fontsize=8)
        ax.set_ylabel(chart["y_label"], fontsize=8)
        if chart["y_range"]:
            ax.set_ylim(*chart["y_range"])
        if len(chart["series"]) > 1:
            ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def _scaled(image: bytes, width: float) -> Image:
    """A PNG at the given width, its height following the image's own proportions (the chart count varies)."""
    w, h = ImageReader(io.BytesIO(image)).getSize()
    return Image(io.BytesIO(image), width, width * h / w)


def _table(rows: list[list[Any]], widths: list[float] | None = None, left: bool = False) -> Table:
    """A gridded table whose header row repeats when it splits across pages; left aligns text columns."""
    t = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(GRID)
    if left:
        t.setStyle([("ALIGN", (0, 0), (-1, -1), "LEFT")])
    return t


def build_story(cfg: dict[str, Any], manifest: dict[str, Any], images: dict[str, bytes],
                diag: dict[str, Any], check: dict[str, Any] | None, top: pd.DataFrame,
                decisions: list[dict[str, Any]], counts: dict[str, int],
                alerts: list[dict[str, Any]]) -> list[Any]:
    """The report's content, top to bottom."""
    h1, h2, p = STYLES["Title"], STYLES["Heading2"], STYLES["BodyText"]
    s, m = manifest["scores"], manifest["model"]
    story: list[Any] = [Paragraph("Client attrition risk: model report", h1),
                        Paragraph(f"Release <b>{manifest['version']}</b> deployed {manifest['created_at']}; model "
                                  f"trained {m.get('trained_at')} on {number(m.get('rows'))} client rows "
                                  f"({percent(m.get('exited_rate'))} exited). "
                                  f"Scored on {number(s.get('rows'))} test rows.",
                                  p),
                        Paragraph(f"Latest check: <b>{escape(reportdata.headline(check, decisions))}</b>", p),
                        Spacer(1, 6),
                        Paragraph("Model quality on the test data", h2),
                        _table([["F1", "precision", "recall", "accuracy", "ROC AUC"],
                                [number(s.get(k)) for k in ("f1", "precision", "recall", "accuracy", "roc_auc")]]),
                        Spacer(1, 8),
                        Table([[Image(io.BytesIO(images["confusion"]), 8 * cm, 6.6 * cm),
                                Image(io.BytesIO(images["roc"]), 7.3 * cm, 6.6 * cm)]], hAlign="LEFT")]
    story += [Paragraph(f"Clients to call first (top {len(top)} by risk among the latest data)", h2)]
    if top.empty:
        story.append(Paragraph("No ingested rows yet.", p))
    else:
        rows = [["client", "risk of exit", *cfg["feature_columns"]]]
        rows += [[r[cfg["id_column"]], f"{100 * r['risk']:.2f}%", *[number(r[f], 0) for f in cfg["feature_columns"]]]
                 for _, r in top.iterrows()]
        story.append(_table(rows))
    story += [Paragraph("Latest drift check", h2)]
    if check:
        story.append(Paragraph(f"Model drift: <b>{check['verdict']}</b> (rule {check['rule']}) - "
                               f"{escape(check['reason'])}. "
                               f"Data drift: <b>{check.get('data_verdict') or '-'}</b>.", p))
        rows = [["feature", "PSI", "PSI noise floor", "KS", "KS p-value", "missing", "verdict"]]
        rows += [[f["feature"], number(f.get("psi")), number(f.get("psi_floor")), number(f.get("ks")),
                  number(f.get("ks_pvalue"), 4), percent(f.get("missing_rate")), f["verdict"]]
                 for f in check.get("features", [])]
        story.append(_table(rows))
        for d in decisions:
            story.append(Paragraph(f"Decision <b>{d['decision']}</b>: {escape(d['reason'])}", p))
    else:
        story.append(Paragraph("No drift check has run yet.", p))
    story += [Paragraph(f"Alerts sent (latest {len(alerts)})", h2)]
    if alerts:
        story.append(_table([["when", "kind", "delivered", "title"]] +
                            [[reportdata.when(a["at"]), a["kind"], "yes" if a["delivered"] else "no",
                              Paragraph(escape(a["title"]), STYLES["BodyText"])] for a in alerts],
                            [3.2 * cm, 3.2 * cm, 1.8 * cm, 8.8 * cm], left=True))
    else:
        story.append(Paragraph("None.", p))
    if images.get("trends"):
        story.append(KeepTogether([  # the heading and its caption move to the next page with the charts
            Paragraph("Trends over runs (history store)", h2),
            Paragraph(f"{number(counts['releases'])} release events, {number(counts['runs'])} fullprocess runs "
                      f"that did work and {number(counts['checks'])} drift checks of new rows.", p),
            _scaled(images["trends"], 17 * cm)]))
    story += [Paragraph(f"Summary statistics of the ingested data ({number(diag['data_rows'])} rows)", h2)]
    rows = [["column", "count", "mean", "median", "std", "min", "max"]]
    rows += [[c, number(v["count"]), *[number(v[k]) for k in ("mean", "median", "std", "min", "max")]]
             for c, v in diag["summary_stats"].items()]
    story.append(_table(rows))
    story += [Paragraph("Missing data", h2),
              _table([["column", "missing", "percent"]] + [[c, number(v["count"]), f"{v['percent']:.2f}%"]
                                                          for c, v in diag["missing_data"].items()])]
    story += [Paragraph(f"Step timings ({diag['timings']['source']})", h2),
              _table([["step", "latest (s)", "median (s)", "runs"]] +
                     [[k, number(v["latest_seconds"]), number(v["median_seconds"]), number(v["runs"])]
                      for k, v in diag["timings"]["steps"].items()])]
    story += [Paragraph("Dependencies", h2),
              _table([["package", "required", "installed", "latest"]] +
                     [[d["package"], d["required"], d["installed"], d["latest"]]
                      for d in diag["dependencies"]["packages"]])]
    ingested, rejected = reportdata.file_records(cfg)
    story += [Paragraph(f"Ingested files ({len(ingested)})", h2),
              _table([["file", "rows read", "rows added", "ingested at"]] +
                     [[e["name"], number(record_int(e["rows_read"])), number(record_int(e["rows_added"])),
                       e["ingested_at"]] for e in ingested.values()])]
    story += [Paragraph(f"Rejected files ({len(rejected)})", h2)]
    if rejected:
        story.append(_table([["file", "reason"]] + [[e["name"], Paragraph(escape(e["reason"]), STYLES["Code"])]
                                                     for e in rejected.values()], [5 * cm, 12 * cm]))
    else:
        story.append(Paragraph("None.", p))
    return story








def report(cfg: dict[str, Any]) -> dict[str, Any]:
    """Write the confusion matrix, ROC curve and the PDF report of the deployed release."""
    try:
        model, manifest = releases.load_deployed_model(cfg)
    except ModelError as e:
        raise cli.StepError(str(e)) from None
    s = manifest["scores"]
    m = metrics(model, read_test_data(cfg), cfg)
    images = {"confusion": confusion_png(m["confusion"], manifest["version"], s["f1"]),
              "roc": roc_png(m["roc"], m["roc_auc"])}
    history_tables = reportdata.trends(cfg)
    charts = reportdata.trend_series(history_tables)
    images["trends"] = trend_png(charts)
    models = cfg["output_model_path"]
    atomic_write(models / CONFUSION, images["confusion"])
    atomic_write(models / ROC, images["roc"])
    diag = reportdata.saved_diagnostics(cfg) or diagnostics.diagnose(cfg)
    check, decisions = reportdata.latest_check(cfg)
    story = build_story(cfg, manifest, images, diag, check, reportdata.top_clients(cfg, model, check), decisions,
                        reportdata.trend_counts(history_tables), reportdata.recent_alerts(cfg))
    stamp = datetime.now(timezone.utc)
    folder = cfg["report_folder_path"]
    path = folder / REPORT
    with atomic_file(path) as f:
        doc = SimpleDocTemplate(f, pagesize=A4, leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.8 * cm,
                                bottomMargin=1.8 * cm, title=f"Attrition model report, release {manifest['version']}")
        footer = _footer(stamp, manifest["version"])
        doc.build(story, onFirstPage=footer, onLaterPages=footer)
    dated = folder / f"report-{stamp:%Y%m%d-%H%M%S}.pdf"
    atomic_write(dated, path.read_bytes())
    pruned = _prune(folder, cfg["reporting"]["reports_kept"])
    log.info("report for release %d -> %s (%d bytes)", manifest["version"], path, path.stat().st_size)
    return {"release": manifest["version"], "f1": s["f1"], "report": display_path(cfg, path),
            "dated_copy": display_path(cfg, dated), "bytes": path.stat().st_size, "pruned": pruned,
            "confusion_matrix": display_path(cfg, models / CONFUSION)}




def _footer(stamp: datetime, release: int) -> Any:
    """A page decorator drawing the date, release and page number at the bottom of every page."""
    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(2 * cm, 1 * cm, f"Dynamic Risk Assessment System - release {release} - "
                                          f"generated {stamp:%Y-%m-%d %H:%M} UTC")
        canvas.drawRightString(A4[0] - 2 * cm, 1 * cm, f"page {doc.page}")
        canvas.restoreState()
    return draw


def _prune(folder: Path, keep: int) -> list[str]:
    """Delete the oldest dated reports beyond keep."""
    dated = sorted(folder.glob("report-*.pdf"))
    doomed = dated[:-keep] if len(dated) > keep else []
    for p in doomed:
        p.unlink(missing_ok=True)
    return [p.name for p in doomed]


def refresh(cfg: dict[str, Any]) -> dict[str, Any]:
    """What fullprocess calls after a run that changed something."""
    return report(cfg)


def summary(r: dict[str, Any]) -> str:
    """One line for people."""
    return (f"report for release {r['release']} (F1 {r['f1']:.3f}) -> {r['report']} ({r['bytes']:,} bytes), "
            f"copy {r['dated_copy']}")


# The course's starter names (Udacity's "A Dynamic Risk Assessment System"): thin calls of the functions above.
def score_model(*, config_path: str | Path | None = None) -> Path:
    """Write the deployed model's confusion matrix on the test data to <output_model_path>/confusionmatrix.png."""
    cfg = load_config(config_path)
    try:
        model, manifest = releases.load_deployed_model(cfg)
    except ModelError as e:
        raise cli.StepError(str(e)) from None
    confusion = metrics(model, read_test_data(cfg), cfg)["confusion"]
    # Only the matrix, as the course's function makes it; report() draws the same picture into the PDF.
    image = confusion_png(confusion, manifest["version"], manifest["scores"]["f1"])
    path = cfg["output_model_path"] / CONFUSION
    atomic_write(path, image)
    return path


if __name__ == "__main__":
    cli.run("reporting", cli.parser(__doc__).parse_args(), report, summary)
