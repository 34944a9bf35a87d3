"""What each stage tells MLflow it used and produced, so the CLI only parses and calls.

A stage command opens its run (:func:`~rnnops.systems.tracking.runs.stage_run`), hands
its inputs here before the work and its outputs after it. What is logged, under which
names, lives in this module alone: the MLflow UI's columns are the same for every run.
"""

from __future__ import annotations

from pathlib import Path

from rnnops.core.io import read_json
from rnnops.systems.tracking.runs import (
    flat_params,
    log_artifact,
    log_dataset,
    log_metrics,
    log_params,
)
from rnnops.systems.tracking.text_model import log_text_model

DATASET_NAME = "reuters-processed"
DATA_FILES = ("vocab.json", "labels.json", "stats.json", "params.json")
TRAIN_METRICS = (
    "train_seconds",
    "seconds_per_epoch",
    "epochs_run",
    "best_epoch",
    "trainable_params",
    "refit_seconds",
)
# Examples stored with the text-in model, shown in the MLflow UI as its input example.
SAMPLE_TEXTS = [
    "Oil prices rose after OPEC agreed to cut crude output.",
    "The company reported higher quarterly profit and raised its dividend.",
]


def record_training_inputs(
    name: str, model_cfg: dict, pretrain_cfg: dict | None, data_dir: Path, data_hash: str | None
) -> None:
    """The model's settings, the data's (and word2vec's, when the model starts from it)."""
    log_params(
        {
            "model.name": name,
            **flat_params("model", model_cfg),
            **flat_params("data", read_json(data_dir / "params.json")),
            **(flat_params("pretrain", pretrain_cfg) if pretrain_cfg is not None else {}),
        }
    )
    log_dataset(data_dir, data_hash, DATASET_NAME, context="training")


def record_training_outputs(summary, out: Path, data_dir: Path) -> None:
    log_metrics({key: getattr(summary, key) for key in TRAIN_METRICS})
    log_artifact(out / "history.csv")
    log_artifact(out / "train.json")
    for name in DATA_FILES:
        log_artifact(data_dir / name, "data")


def record_ensemble_inputs(
    name: str, members: list[str], member_cfgs: dict[str, dict], data_dir: Path
) -> None:
    log_params(
        {
            "model.name": name,
            "model.kind": "ensemble",
            "model.members": ",".join(members),
            # The data its members were trained on, as on every model's run.
            **flat_params("data", read_json(data_dir / "params.json")),
            **{
                f"member.{m}.{k}": v
                for m in members
                for k, v in flat_params("model", member_cfgs[m]).items()
            },
        }
    )


def record_ensemble_outputs(summary, out: Path) -> None:
    log_metrics({"trainable_params": summary.trainable_params})
    if summary.train_seconds is not None:
        log_metrics({"train_seconds": summary.train_seconds})
    log_artifact(out / "train.json")


def record_evaluation(
    name: str,
    result: dict,
    metric_keys: tuple[str, ...],
    paths: dict[str, Path],
    data_hash: str | None,
) -> str:
    """Test and validation metrics, the reports, and the text-in model; returns its URI.

    ``paths``: ``model_dir``, ``data_dir``, ``metrics``, ``plots`` and ``report``.
    """
    log_dataset(paths["data_dir"], data_hash, DATASET_NAME, context="evaluation")
    log_metrics({f"test_{k}": result[k] for k in metric_keys})
    # Validation is what selection reads (the threshold, the promotion): the MLflow UI
    # shows it beside test so runs can be compared the way the pipeline compares them.
    log_metrics({f"validation_{k}": v for k, v in result["validation"].items() if k in metric_keys})
    if result["threshold"] is not None:
        log_metrics({"decision_threshold": result["threshold"]})
    log_artifact(paths["metrics"], "evaluation")
    log_artifact(paths["report"], "evaluation")
    log_artifact(paths["plots"], "plots")
    return log_text_model(
        paths["model_dir"] / "model.keras",
        paths["data_dir"] / "vocab.json",
        paths["report"] / "decision.json",
        SAMPLE_TEXTS,
        name=name,
    )
