"""Evaluation plots saved as PNG files (matplotlib Agg backend; no display needed).

Each function writes one file into ``out_dir`` and returns its path, ready for ``mlflow.log_artifact``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import lightgbm as lgb  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from ulm.ml.metrics import calibration_table  # noqa: E402


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def roc_pr(y_true, scores: dict[str, np.ndarray], out_dir: Path) -> list[Path]:
    """ROC and precision-recall curves, one line per model."""
    fig1, ax1 = plt.subplots(figsize=(5, 4))
    fig2, ax2 = plt.subplots(figsize=(5, 4))
    for label, s in scores.items():
        fpr, tpr, _ = roc_curve(y_true, s)
        ax1.plot(fpr, tpr, label=label)
        prec, rec, _ = precision_recall_curve(y_true, s)
        ax2.plot(rec, prec, label=label)
    ax1.plot([0, 1], [0, 1], "k:", lw=1)
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax1.legend()
    ax2.legend()
    return [_save(fig1, out_dir, "roc.png"), _save(fig2, out_dir, "pr.png")]


def calibration(y_true, y_prob, out_dir: Path) -> Path:
    t = calibration_table(y_true, y_prob).dropna()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(t["mean_predicted"], t["observed_rate"], "o-")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration")
    return _save(fig, out_dir, "calibration.png")


def lift_gain(y_true, y_score, out_dir: Path, name: str = "gain.png") -> Path:
    """Cumulative gain: share of positives (or revenue) captured by the top x% by score."""
    y = np.asarray(y_true, dtype="float64")
    order = np.argsort(-np.asarray(y_score, dtype="float64"), kind="stable")
    captured = np.cumsum(y[order]) / max(y.sum(), 1e-12)
    share = np.arange(1, len(y) + 1) / len(y)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(share, captured, label="model")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax.set(xlabel="share of persons (by score)", ylabel="share captured", title="Cumulative gain")
    ax.legend()
    return _save(fig, out_dir, name)


def feature_importance(booster: lgb.Booster, x: pd.DataFrame, out_dir: Path,
                       top: int = 20) -> tuple[Path, pd.DataFrame]:
    """Gain importance and mean |SHAP| (LightGBM ``pred_contrib``) side by side; returns the table too."""
    from ulm.ml.models import lgbm_threads

    contrib = booster.predict(x, pred_contrib=True, num_threads=lgbm_threads())
    shap_abs = np.abs(np.asarray(contrib)[:, :-1]).mean(axis=0)  # last column is the expected value
    table = pd.DataFrame({"feature": booster.feature_name(), "gain": booster.feature_importance("gain"),
                          "mean_abs_shap": shap_abs}).sort_values("mean_abs_shap", ascending=False)
    t = table.head(top).iloc[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, max(3, 0.3 * len(t))))
    axes[0].barh(t["feature"], t["mean_abs_shap"])
    axes[0].set(title="mean |SHAP contribution|")
    axes[1].barh(t["feature"], t["gain"])
    axes[1].set(title="split gain")
    return _save(fig, out_dir, "feature_importance.png"), table.reset_index(drop=True)


def ltv_deciles(y_true, y_pred, out_dir: Path) -> Path:
    """Mean predicted vs actual LTV per predicted decile."""
    df = pd.DataFrame({"y": np.asarray(y_true, float), "p": np.asarray(y_pred, float)})
    df["decile"] = pd.qcut(df["p"].rank(method="first"), 10, labels=False) + 1
    g = df.groupby("decile")[["y", "p"]].mean()
    fig, ax = plt.subplots(figsize=(6, 4))
    w = 0.4
    ax.bar(g.index - w / 2, g["p"], w, label="predicted")
    ax.bar(g.index + w / 2, g["y"], w, label="actual")
    ax.set(xlabel="predicted decile (10 = highest)", ylabel="mean LTV (CNY)", title="LTV by predicted decile")
    ax.legend()
    return _save(fig, out_dir, "ltv_deciles.png")


def calibration_vs_holdout(table: pd.DataFrame, model: str, out_dir: Path,
                           other: tuple[str, pd.DataFrame] | None = None) -> Path:
    """Mean actual vs predicted holdout purchases by calibration-period frequency (Fader, Hardie & Lee 2005 fig. 4);
    ``table`` from ``ulm.ml.clv_holdout.by_frequency``; ``other`` adds a second model's predictions dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(table["frequency_label"], table["actual"], "o-", color="black", label="actual")
    ax.plot(table["frequency_label"], table["predicted"], "s-", label=model)
    if other is not None:
        ax.plot(other[1]["frequency_label"], other[1]["predicted"], "^--", label=other[0], alpha=0.7)
    ax.set(xlabel="repeat purchases in the calibration period", ylabel="mean repeat purchases in the holdout",
           title="Calibration vs holdout")
    ax.legend()
    return _save(fig, out_dir, "calibration_vs_holdout.png")


def cumulative_repeat_transactions(track: pd.DataFrame, model: str, out_dir: Path,
                                   other: tuple[str, pd.DataFrame] | None = None) -> Path:
    """Cumulative repeat purchases of the cohort per week, actual vs expected (Fader, Hardie & Lee 2005 fig. 2);
    ``track`` from ``ulm.ml.clv_holdout.cumulative``; a dotted line marks the end of the calibration period."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(track["week"], track["actual_cumulative"], color="black", label="actual")
    ax.plot(track["week"], track["expected_cumulative"], "--", label=model)
    if other is not None:
        ax.plot(other[1]["week"], other[1]["expected_cumulative"], ":", label=other[0])
    cal_end = track.loc[track["period"] == "calibration", "week"].max()
    ax.axvline(cal_end, color="grey", ls=":", lw=1)
    ax.set(xlabel="week since the cohort's first purchase", ylabel="cumulative repeat purchases",
           title="Tracking cumulative repeat purchases")
    ax.legend()
    return _save(fig, out_dir, "cumulative_repeat_transactions.png")


def matrix_heatmap(matrix: pd.DataFrame, title: str, out_dir: Path, name: str) -> Path:
    """Frequency (rows) x recency (columns) heatmap, e.g. P(alive) or expected purchases; NaN cells blank."""
    fig, ax = plt.subplots(figsize=(7, 5))
    im = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set(xlabel="recency (time units since the first purchase)", ylabel="frequency (repeat purchases)", title=title)
    return _save(fig, out_dir, name)
