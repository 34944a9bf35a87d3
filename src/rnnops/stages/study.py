"""The study's results from its finished points, and the report written from them.

A finished point is a DVC experiment; the study flow copies the outputs it needs
(``metrics``, ``reports/eval``, ``data/processed``, the raw corpus) into a scratch folder
and :func:`collect_point` reads one row per model from there. :func:`write_study_report`
renders the rows (``reports/study.md``, ``.html``, figures and ``results.json``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from rnnops.core.html_report import markdown_to_html
from rnnops.core.io import atomic_path, read_json, write_json
from rnnops.core.study_plan import StudyPlan, StudyPoint
from rnnops.core.study_report import learning_curve, study_markdown, title
from rnnops.core.study_results import headline_metric, summary_rows
from rnnops.stages.compare import bucket_metrics, length_edges
from rnnops.stages.preprocess import load_dataset

# What a point's experiment must hand over for its rows (and the SVM beside them).
POINT_OUTPUTS = ["metrics", "reports/eval", "data/processed", "data/raw/reuters.parquet"]
FIGURES = ("study_cells.png", "study_length.png", "study_remedies.png")


def collect_point(point: StudyPoint, workdir: str | Path) -> list[dict[str, Any]]:
    """One row per model of ``point``, from its outputs copied into ``workdir``."""
    workdir = Path(workdir)
    test = load_dataset(workdir / "data" / "processed", "test")
    lengths = pd.Series(test.lengths, index=test.doc_ids.astype(str))
    edges = length_edges(test.lengths)
    rows = []
    for model in point.models:
        metrics = read_json(workdir / "metrics" / f"{model.name}.json")
        predictions = pd.read_csv(workdir / "reports" / "eval" / model.name / "predictions.csv")
        buckets = bucket_metrics(predictions, lengths, edges)
        validation = metrics.get("validation") or {}
        rows.append(
            {
                "point": point.name,
                "group": point.group,
                "task": point.task,
                "task_kind": metrics["task"],
                "seed": point.seed,
                "probe": point.probe,
                "fraction": point.fraction,
                "model": model.name,
                "role": model.role,
                "cell": model.cell,
                "variant": model.variant,
                "kind": model.config.get("kind"),
                "bidirectional": bool(model.config.get("bidirectional", False)),
                "skip": bool(model.config.get("embedding_skip")),
                "layers": int(model.config.get("layers", 1)),
                "units": model.config.get("units"),
                "recurrent_weights": model.recurrent_weights,
                **{k: metrics[k] for k in ("accuracy", "micro_f1", "macro_f1")},
                **{f"val_{k}": validation.get(k) for k in ("accuracy", "micro_f1", "macro_f1")},
                "epochs": metrics.get("epochs"),
                "train_seconds": metrics.get("train_seconds"),
                "trainable_params": metrics.get("trainable_params"),
                "quartile_edges": [int(e) for e in edges],
                "quartiles": buckets.to_dict("records"),
            }
        )
    return rows


def svm_baseline(workdir: str | Path) -> dict[str, Any]:
    """TF-IDF + linear SVM on the point's splits (the raw text: no truncation applies)."""
    from rnnops.stages.baseline import tfidf_svm

    workdir = Path(workdir)
    return tfidf_svm(workdir / "data" / "raw" / "reuters.parquet", workdir / "data" / "processed")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cells(rows: list[dict], tasks: dict[str, str], baselines: dict, path: Path) -> None:
    """Per task: each model's headline score, mean ± sd over seeds, the SVM as a line."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    for ax, (task, kind) in zip(axes[0], tasks.items(), strict=True):
        metric = headline_metric(kind)
        summary = summary_rows(rows, metric, task=task, probe="standard", group="cells")
        means = [s[metric][0] for s in summary]
        sds = [s[metric][1] for s in summary]
        colours = ["tab:gray" if s["role"] == "skip_only" else "tab:blue" for s in summary]
        colours = [
            "tab:orange" if s["skip"] and s["role"] != "skip_only" else c
            for s, c in zip(summary, colours, strict=True)
        ]
        ax.bar(range(len(summary)), means, yerr=sds, color=colours, capsize=3)
        ax.set_xticks(range(len(summary)), [s["model"] for s in summary], rotation=60)
        if task in baselines:
            ax.axhline(baselines[task][metric], color="k", ls="--", lw=1, label="TF-IDF + SVM")
            ax.legend(loc="lower right")
        finite = [m for m in means if not math.isnan(m)]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 0.1), 1.0)
        ax.set_title(f"{title(task)}: test {metric}")
    fig.suptitle(
        "blue: recurrent alone · orange: with the embedding skip · grey: skip only", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_length(rows: list[dict], tasks: dict[str, str], probes: list[str], path: Path) -> None:
    """Micro-F1 by length quartile of the cells with no skip, per task and probe."""
    plt = _pyplot()
    panels = [(t, p) for t in tasks for p in ["standard", *probes]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (task, probe) in zip(axes[0], panels, strict=True):
        summary = summary_rows(rows, "micro_f1", task=task, probe=probe, group="cells")
        for s in summary:
            if s["role"] in ("cell", "skip_only") and s["quartiles"]:
                means = [q[0] for q in s["quartiles"]]
                ax.plot(range(1, len(means) + 1), means, marker="o", label=s["model"])
        ax.set_xticks(range(1, 5))
        ax.set_xlabel("length quartile (1: shortest)")
        ax.set_ylabel("test micro-F1")
        ax.set_title(f"{title(task)}, {probe}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_remedies(rows: list[dict], tasks: dict[str, str], path: Path) -> None:
    """The remedies against the baseline, and the baseline's learning curve, per task."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.5 * len(tasks), 8), squeeze=False)
    for col, (task, kind) in enumerate(tasks.items()):
        metric = headline_metric(kind)
        summary = summary_rows(rows, metric, task=task, group="remedies")
        ax = axes[0][col]
        ax.bar(
            range(len(summary)),
            [s[metric][0] for s in summary],
            yerr=[s[metric][1] for s in summary],
            capsize=3,
        )
        ax.set_xticks(range(len(summary)), [s["model"] for s in summary], rotation=30)
        ax.set_title(f"{title(task)}: remedies, test {metric}")
        curve = learning_curve(rows, task, metric)
        ax = axes[1][col]
        if curve:
            xs = [c[0] for c in curve]
            ax.errorbar(xs, [c[2][0] for c in curve], yerr=[c[2][1] for c in curve], marker="o")
            ax.errorbar(xs, [c[3][0] for c in curve], yerr=[c[3][1] for c in curve], marker="s")
            ax.legend(["test", "validation"])
        ax.set_xlabel("share of the training split")
        ax.set_title(f"{title(task)}: more data (article)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_study_report(
    plan: StudyPlan,
    rows: list[dict],
    baselines: dict[str, dict],
    meta: dict[str, Any],
    out_md: str | Path,
    out_html: str | Path,
    figures_dir: str | Path,
) -> dict[str, Path]:
    """Write the report, its figures and ``results.json``; return what was written."""
    out_md, out_html, figures_dir = Path(out_md), Path(out_html), Path(figures_dir)
    tasks = meta["tasks"]
    probes = list(meta.get("probes", {}))
    with atomic_path(figures_dir) as tmp:
        tmp.mkdir(parents=True)
        plot_cells(rows, tasks, baselines, tmp / "study_cells.png")
        plot_length(rows, tasks, probes, tmp / "study_length.png")
        remedies = any(r["group"] == "remedies" for r in rows)
        if remedies:
            plot_remedies(rows, tasks, tmp / "study_remedies.png")
        write_json(
            tmp / "results.json",
            {"study_id": plan.study_id, "rows": rows, "baselines": baselines, "meta": meta},
        )
    figures = {
        name: Path(os.path.relpath(figures_dir / name, out_md.parent)).as_posix()
        for name in FIGURES
        if (figures_dir / name).exists()
    }
    markdown = study_markdown(plan.study_id, rows, baselines, meta, figures)
    images = {rel: (figures_dir / name).read_bytes() for name, rel in figures.items()}
    out_md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_md) as tmp:
        tmp.write_text(markdown)
    with atomic_path(out_html) as tmp:
        tmp.write_text(markdown_to_html(markdown, images, "The RNN-vs-LSTM study"))
    return {
        "markdown": out_md,
        "html": out_html,
        "results": figures_dir / "results.json",
        **{name: figures_dir / name for name in figures},
    }


def quartile_edges(rows: list[dict]) -> dict[str, str]:
    """Per task, the quartile edges as text (the same for every point of a task)."""
    out = {}
    for r in rows:
        if r["task"] not in out and r.get("quartile_edges"):
            out[r["task"]] = "–".join(str(e) for e in r["quartile_edges"])
    return out
