"""compare: one report that answers "SimpleRNN or LSTM?" for the models of this execution.

Reads what the pipeline already wrote (metrics, learning curves, per-class
reports, test predictions, processed data) and writes ``comparison.md`` and a
self-contained ``comparison.html`` (figures embedded as base64 PNG), plus the
figures as PNG files for ``dvc plots``. The pure cores take frames and return
frames; :func:`run_compare` does the file work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.html_report import markdown_to_html
from rnnops.core.io import atomic_path, read_json
from rnnops.stages.compare_plots import plot_buckets, plot_learning_curves, plot_per_class
from rnnops.stages.compare_report import report_markdown
from rnnops.stages.preprocess import load_dataset

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "model",
    "kind",
    "trainable_params",
    "train_seconds",
    "epochs",
    "val_micro_f1",
    "val_macro_f1",
    "accuracy",
    "micro_f1",
    "macro_f1",
)
FIGURES = ("learning_curves.png", "per_class_f1.png", "length_buckets.png")


@dataclass(frozen=True)
class Comparison:
    summary: pd.DataFrame
    per_class: pd.DataFrame
    buckets: pd.DataFrame
    baseline: dict | None
    markdown: str
    figures: dict[str, Path]
    ablation: list[dict] = ()


# --------------------------------------------------------------------------- pure cores


def summary_table(metrics: dict[str, dict], kinds: dict[str, str]) -> pd.DataFrame:
    """One row per model, best validation macro-F1 first (validation selects; test reports)."""
    rows = []
    for name, m in metrics.items():
        validation = m.get("validation") or {}
        row = {"model": name, "kind": kinds.get(name, "?")}
        for column in SUMMARY_COLUMNS[2:]:
            key = column.removeprefix("val_")
            row[column] = validation.get(key) if column.startswith("val_") else m.get(column)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    # Counts stay integers where a model has none (an ensemble has no epochs), not 13.0.
    for column in ("trainable_params", "epochs"):
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame.sort_values("val_macro_f1", ascending=False, kind="stable").reset_index(drop=True)


def per_class_side_by_side(per_class: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-topic F1 of every model in columns, topics by test support (largest first)."""
    merged = None
    for name, frame in per_class.items():
        part = frame[["label", "support", "f1"]].rename(columns={"f1": name})
        merged = (
            part
            if merged is None
            else merged.merge(part.drop(columns="support"), on="label", how="outer")
        )
    if merged is None:
        return pd.DataFrame(columns=["label", "support"])
    return merged.sort_values(["support", "label"], ascending=[False, True]).reset_index(drop=True)


def length_edges(lengths: np.ndarray, buckets: int = 4) -> np.ndarray:
    """Bucket edges at the quantiles of the test lengths (duplicates merged)."""
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)).round().astype(int))
    if len(edges) < 2:
        edges = np.array([int(lengths.min()), int(lengths.max()) + 1])
    return edges


def _topic_sets(column: pd.Series) -> list[set[str]]:
    return [set(str(v).split(";")) - {""} if isinstance(v, str) else set() for v in column]


def bucket_metrics(
    predictions: pd.DataFrame, lengths: pd.Series, edges: np.ndarray
) -> pd.DataFrame:
    """Accuracy (exact topic set) and micro-F1 per document-length bucket.

    ``predictions`` holds ``doc_id``, ``actual`` and ``predicted`` (topics joined
    by ``;``); ``lengths`` maps doc_id to the token count before truncation.
    """
    frame = predictions.assign(length=predictions["doc_id"].astype(str).map(lengths))
    frame = frame.dropna(subset=["length"])
    bins = pd.cut(frame["length"], bins=edges, include_lowest=True, right=True)
    rows = []
    for interval, part in frame.groupby(bins, observed=True):
        actual, predicted = _topic_sets(part["actual"]), _topic_sets(part["predicted"])
        tp = sum(len(a & p) for a, p in zip(actual, predicted, strict=True))
        fp = sum(len(p - a) for a, p in zip(actual, predicted, strict=True))
        fn = sum(len(a - p) for a, p in zip(actual, predicted, strict=True))
        rows.append(
            {
                "bucket": f"{_lower(interval.left)}–{int(interval.right)} tokens",
                "documents": len(part),
                "accuracy": float(
                    np.mean([a == p for a, p in zip(actual, predicted, strict=True)])
                ),
                "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["bucket", "documents", "accuracy", "micro_f1"])


def _lower(left: float) -> int:
    # Buckets are (left, right]; the first one's left edge was lowered by pandas to include it.
    return int(left) + 1 if float(left).is_integer() else int(np.ceil(left))


def buckets_side_by_side(per_model: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long format: one row per (model, bucket)."""
    frames = [frame.assign(model=name) for name, frame in per_model.items()]
    if not frames:
        return pd.DataFrame(columns=["model", "bucket", "documents", "accuracy", "micro_f1"])
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "bucket", "documents", "accuracy", "micro_f1"]]


# --------------------------------------------------------------------------- figures


def run_compare(
    model_names: list[str],
    kinds: dict[str, str],
    metrics_dir: str | Path,
    models_dir: str | Path,
    eval_dir: str | Path,
    data_dir: str | Path,
    raw_path: str | Path | None,
    report_md: str | Path,
    report_html: str | Path,
    plots_dir: str | Path,
    baseline: bool = True,
    twins: dict[str, dict[str, str | None]] | None = None,
    model_configs: dict | None = None,
    promotion_path: str | Path | None = None,
) -> Comparison:
    """Compare the evaluated models; write the report (md, html) and its figures.

    ``twins`` (from :func:`rnnops.core.ablation.find_twins`) adds the ablation section;
    ``model_configs`` (the trained models' configs) the recurrent models beside the
    bags of embeddings.
    """
    from rnnops.core.ablation import ablation_rows, bag_of_embeddings_gaps

    metrics_dir, models_dir, eval_dir = Path(metrics_dir), Path(models_dir), Path(eval_dir)
    missing = [n for n in model_names if not (metrics_dir / f"{n}.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"no evaluation for {', '.join(missing)}: run evaluate first (dvc repro)"
        )
    metrics = {n: read_json(metrics_dir / f"{n}.json") for n in model_names}
    task = next(iter(metrics.values()))["task"] if metrics else "?"
    summary = summary_table(metrics, kinds)
    ablation = ablation_rows(twins or {}, metrics)
    bag_gaps = bag_of_embeddings_gaps(model_configs or {}, metrics)
    per_class = per_class_side_by_side(
        {n: pd.read_csv(eval_dir / n / "per_class.csv") for n in model_names}
    )
    buckets = _length_buckets(model_names, eval_dir, data_dir)
    svm = None
    if baseline and raw_path is not None:
        from rnnops.stages.baseline import tfidf_svm

        svm = tfidf_svm(raw_path, data_dir)
    figures = _write_figures(model_names, models_dir, per_class, buckets, Path(plots_dir))
    report_md, report_html = Path(report_md), Path(report_html)
    rel = {name: _relative(path, report_md.parent) for name, path in figures.items()}
    has_promotion = promotion_path is not None and Path(promotion_path).exists()
    promotion = read_json(promotion_path) if has_promotion else None
    markdown = report_markdown(
        summary, per_class, buckets, svm, rel, task, ablation, bag_gaps, promotion
    )
    images = {rel[name]: path.read_bytes() for name, path in figures.items()}
    with atomic_path(report_md) as tmp:
        tmp.write_text(markdown)
    with atomic_path(report_html) as tmp:
        tmp.write_text(markdown_to_html(markdown, images, "Model comparison"))
    return Comparison(summary, per_class, buckets, svm, markdown, figures, ablation)


def _length_buckets(model_names: list[str], eval_dir: Path, data_dir: str | Path) -> pd.DataFrame:
    """Each model's scores per test-length bucket, side by side."""
    test = load_dataset(data_dir, "test")
    lengths = pd.Series(test.lengths, index=test.doc_ids.astype(str))
    edges = length_edges(test.lengths)
    return buckets_side_by_side(
        {
            n: bucket_metrics(pd.read_csv(eval_dir / n / "predictions.csv"), lengths, edges)
            for n in model_names
        }
    )


def _write_figures(
    model_names: list[str],
    models_dir: Path,
    per_class: pd.DataFrame,
    buckets: pd.DataFrame,
    plots_dir: Path,
) -> dict[str, Path]:
    """The report's figures, written together (atomically) into ``plots_dir``."""
    histories = {
        n: pd.read_csv(models_dir / n / "history.csv")
        for n in model_names
        if (models_dir / n / "history.csv").exists()
    }
    with atomic_path(plots_dir) as tmp:
        tmp.mkdir()
        plot_learning_curves(histories, tmp / "learning_curves.png")
        plot_per_class(per_class, list(model_names), tmp / "per_class_f1.png")
        plot_buckets(buckets, tmp / "length_buckets.png")
    return {name: plots_dir / name for name in FIGURES}


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
