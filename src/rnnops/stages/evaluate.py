"""evaluate: score a trained model on the validation and held-out test splits.

The multi-label decision threshold is tuned on the validation split, never on
test. The validation scores (under that decision rule) are what selects: the
promotion candidate, the champion gate and every "best" in a report; the test
scores only report. Writes the metrics JSON (test metrics at the top level, the
validation ones under ``validation``); a report directory with the per-class report
(``per_class.csv``), the test predictions and the decision rule; and a plots
directory with a confusion matrix (single-label) and a per-class F1 chart.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from rnnops.core.config import EvaluateConfig
from rnnops.core.decision import ABSTAIN, Decision, decide
from rnnops.core.io import atomic_path, read_json, write_json
from rnnops.core.stage_files import VAL_SCORES
from rnnops.core.text import coverage, evidence_mask
from rnnops.stages.preprocess import load_dataset

log = logging.getLogger(__name__)

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


class EvaluationError(RuntimeError):
    """Evaluation produced unusable (non-finite) results."""


def tune_threshold(
    scores: np.ndarray,
    y_true: np.ndarray,
    at_least_one: bool,
    known_tokens: np.ndarray | None = None,
) -> float:
    """The threshold in a fixed grid that maximises micro-F1 (ties: the lower one), under
    the same abstention rule the decision applies."""
    best_t, best_f1 = 0.5, -1.0
    for t in THRESHOLD_GRID:
        f1 = f1_score(
            y_true,
            decide(scores, "multilabel", float(t), at_least_one, known_tokens),
            average="micro",
            zero_division=0,
        )
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t


def compute_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], task: str
) -> tuple[dict, pd.DataFrame]:
    """Headline metrics and a per-class precision/recall/F1 table.

    Multi-label accuracy is subset accuracy (every topic of a document right).
    """
    label_ids = list(range(len(labels)))
    kwargs = {"labels": label_ids} if task == "singlelabel" else {}
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0, **kwargs)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0, **kwargs)),
        "weighted_f1": float(
            f1_score(y_true, y_pred, average="weighted", zero_division=0, **kwargs)
        ),
    }
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0, **kwargs)
    per_class = pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "support": s})
    mp, mr, _, _ = precision_recall_fscore_support(
        y_true, y_pred, average="micro", zero_division=0, **kwargs
    )
    metrics["micro_precision"], metrics["micro_recall"] = float(mp), float(mr)
    return metrics, per_class


def predictions_frame(doc_ids, y_true, y_pred, scores, labels, task) -> pd.DataFrame:
    names = np.array(labels)
    if task == "singlelabel":
        # An abstention (no evidence in the text) is predicted "" with the top score.
        abstained = y_pred == ABSTAIN
        picked = np.where(abstained, scores.argmax(axis=1), y_pred)
        return pd.DataFrame(
            {
                "doc_id": doc_ids,
                "actual": names[y_true],
                "predicted": np.where(abstained, "", names[picked]),
                "score": scores[np.arange(len(scores)), picked].round(6),
            }
        )
    join = lambda row: ";".join(names[row.astype(bool)])  # noqa: E731
    return pd.DataFrame(
        {
            "doc_id": doc_ids,
            "actual": [join(r) for r in y_true],
            "predicted": [join(r) for r in y_pred],
            "score": scores.max(axis=1).round(6),
        }
    )


def plot_confusion(y_true, y_pred, labels, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    size = max(5.0, 0.28 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(np.log1p(cm), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7 if len(labels) > 20 else 9)
    ax.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) > 20 else 9)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        cm[i, j],
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class_f1(per_class: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = per_class.sort_values("support", ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(data) + 2), 4.5))
    ax.bar(range(len(data)), data["f1"], color="tab:blue")
    ax.set_xticks(range(len(data)), data["label"], rotation=90, fontsize=6 if len(data) > 30 else 8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (test)")
    ax.set_title(f"{title} — topics by test support, most frequent first")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_scores(
    val_scores: np.ndarray,
    val_y: np.ndarray,
    test_scores: np.ndarray,
    test_y: np.ndarray,
    labels: list[str],
    task: str,
    cfg: EvaluateConfig,
    val_known: np.ndarray | None = None,
    test_known: np.ndarray | None = None,
) -> tuple[dict, pd.DataFrame, np.ndarray, Decision, dict]:
    """Pure core: scores in; test metrics, per-class table, predictions, the decision rule
    and the validation metrics (under the same rule) out.

    ``val_known`` / ``test_known`` (evidence tokens per document, as serving counts them)
    let the decision abstain on documents without evidence exactly as serving does.
    """
    if not (np.isfinite(test_scores).all() and np.isfinite(val_scores).all()):
        raise EvaluationError(
            "the model produced non-finite scores; retrain it (check the learning rate)"
        )
    threshold = None
    if task == "multilabel":
        threshold = (
            tune_threshold(val_scores, val_y, cfg.at_least_one, val_known)
            if cfg.threshold == "validation"
            else float(cfg.threshold)
        )
    decision = Decision(task=task, threshold=threshold, at_least_one=cfg.at_least_one)
    y_pred = decision.apply(test_scores, test_known)
    metrics, per_class = compute_metrics(test_y, y_pred, labels, task)
    val_metrics, _ = compute_metrics(val_y, decision.apply(val_scores, val_known), labels, task)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    bad += [f"validation {k}" for k, v in val_metrics.items() if not math.isfinite(v)]
    if bad:
        raise EvaluationError(f"non-finite metrics: {bad}")
    return metrics, per_class, y_pred, decision, val_metrics


def run_evaluate(
    name: str,
    cfg: EvaluateConfig,
    model_dir: str | Path,
    data_dir: str | Path,
    metrics_path: str | Path,
    plots_dir: str | Path,
    report_dir: str | Path,
) -> dict:
    from rnnops.core.models import load_model

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    labels_info = read_json(data_dir / "labels.json")
    labels, task = labels_info["labels"], labels_info["task"]
    model_path = model_dir / "model.keras"
    if not model_path.exists():
        raise FileNotFoundError(
            f"{model_path} not found: run train@{name} first (dvc repro train@{name})"
        )
    model = load_model(model_path)
    val, test = load_dataset(data_dir, "val"), load_dataset(data_dir, "test")
    val_scores = _validation_scores(name, model, model_dir, val, data_dir)
    test_scores = model.predict(test.x, batch_size=256, verbose=0)
    # The same evidence count serving takes from the same encoding (rnnops.core.text.coverage).
    mask = evidence_mask(read_json(data_dir / "vocab.json")["tokens"])
    val_known, test_known = coverage(val.x, mask).known_tokens, coverage(test.x, mask).known_tokens
    metrics, per_class, y_pred, decision, val_metrics = evaluate_scores(
        val_scores, val.y, test_scores, test.y, labels, task, cfg, val_known, test_known
    )
    train_info = read_json(model_dir / "train.json") if (model_dir / "train.json").exists() else {}
    result = {
        "model": name,
        "task": task,
        "labels": len(labels),
        **{k: round(v, 6) for k, v in metrics.items()},
        "threshold": decision.threshold,
        "test_documents": len(test.y),
        "test_documents_without_evidence": int((test_known < decision.min_known_tokens).sum()),
        "validation": {k: round(v, 6) for k, v in val_metrics.items()},
        "validation_documents": len(val.y),
        "epochs": train_info.get("epochs_run"),
        "train_seconds": train_info.get("train_seconds"),
        "trainable_params": train_info.get("trainable_params"),
    }
    preds = predictions_frame(test.doc_ids, test.y, y_pred, test_scores, labels, task)
    with atomic_path(report_dir) as tmp:
        tmp.mkdir()
        per_class.to_csv(tmp / "per_class.csv", index=False, float_format="%.6g")
        preds.to_csv(tmp / "predictions.csv", index=False)
        write_json(tmp / "decision.json", {**decision.to_dict(), "labels": labels})
    with atomic_path(plots_dir) as tmp:
        tmp.mkdir()
        title = f"{name} ({task}, {len(labels)} topics)"
        if task == "singlelabel":
            plot_confusion(test.y, y_pred, labels, tmp / "confusion_matrix.png", title)
        plot_per_class_f1(per_class, tmp / "per_class_f1.png", title)
    write_json(metrics_path, result)
    return result


def _validation_scores(name: str, model, model_dir: Path, val, data_dir: Path) -> np.ndarray:
    """The held-out validation scores the train stage took before any refit (which trains
    on validation); a model without them is scored here."""
    held_out = model_dir / VAL_SCORES
    val_scores = (
        np.load(held_out, allow_pickle=False)
        if held_out.exists()
        else model.predict(val.x, batch_size=256, verbose=0)
    )
    if len(val_scores) != len(val.y):
        raise EvaluationError(
            f"{held_out} scores {len(val_scores)} validation documents, {data_dir} has "
            f"{len(val.y)}: retrain {name} on this data (dvc repro train@{name})"
        )
    return val_scores


METRIC_KEYS = ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "micro_precision", "micro_recall")
TABLE_COLUMNS = (
    "model",
    "accuracy",
    "micro_f1",
    "macro_f1",
    "threshold",
    "epochs",
    "train_seconds",
    "trainable_params",
)


def comparison_table(metrics_dir: str | Path) -> str:
    """A one-screen table of every model evaluated so far, best macro-F1 first."""
    rows = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if not rows:
        return "(no evaluated models yet)"
    rows.sort(key=lambda r: -(r.get("macro_f1") or 0))

    def fmt(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}" if value < 10 else f"{value:.1f}"
        return str(value)

    table = [list(TABLE_COLUMNS)] + [[fmt(r.get(c)) for c in TABLE_COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
