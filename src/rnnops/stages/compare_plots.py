"""The comparison report's figures: learning curves, per-class F1, F1 by document length.

Matplotlib with the Agg backend, imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# The validation score early stopping watches by default (rnnops.stages.train.monitored).
SCORE_COLUMNS = ("val_micro_f1", "val_accuracy")


def plot_learning_curves(histories: dict[str, pd.DataFrame], path: Path) -> None:
    plt = _pyplot()
    score = next((c for c in SCORE_COLUMNS if any(c in h for h in histories.values())), None)
    panels = [("loss", "training loss", "loss"), ("val_loss", "validation loss", "loss")]
    if score:
        panels.append((score, f"validation {score.removeprefix('val_')}", score[4:]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4))
    for name, history in histories.items():
        for ax, (metric, _, _) in zip(axes, panels, strict=True):
            if metric in history:
                ax.plot(history["epoch"], history[metric], marker="o", label=name)
    for ax, (_, title, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_per_class(per_class: pd.DataFrame, models: list[str], path: Path, top: int = 30) -> None:
    """A topics × models heat map of test F1: legible at its shown size for any model count."""
    plt = _pyplot()
    data = per_class.head(top)
    values = data[models].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(2.8 + 1.0 * len(models), 1.2 + 0.26 * len(data)))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(data)), data["label"], fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > 0.6 else "white",
            )
    ax.set_title(f"test F1, {len(data)} most frequent topics", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_buckets(buckets: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    order = list(dict.fromkeys(buckets["bucket"]))
    for name, part in buckets.groupby("model", sort=False):
        part = part.set_index("bucket").reindex(order)
        ax.plot(range(len(order)), part["micro_f1"], marker="o", label=name)
    ax.set_xticks(range(len(order)), order, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("micro-F1 (test)")
    ax.set_title("test micro-F1 by document length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- entry
