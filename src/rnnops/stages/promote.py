"""promote: register this execution's best model and move ``champion`` only on evidence.

Selection never looks at test. The candidate is the evaluated model with the best
``promotion.metric`` on the **validation** split (the split that also tuned its
threshold). It becomes a new version of the registered model. The current champion
is scored on the same validation data (re-scored when it was evaluated on other
data); the ``champion`` alias moves only if the candidate wins by at least
``promotion.min_delta``,
otherwise the candidate becomes ``challenger``. Decisions are serialised by a
lock, under which the champion is re-read, so two promotions at once cannot let
the worse model win. Every decision is written to the promotion report and onto
the model version as tags.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnops.core import contract
from rnnops.core.config import PromotionConfig
from rnnops.core.io import read_json, write_json
from rnnops.core.text import document_text
from rnnops.stages.evaluate import compute_metrics
from rnnops.stages.preprocess import load_dataset

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# The split whose scores pick the candidate and decide the gate; test only reports.
SELECTION_SPLIT = "validation"


class PromotionError(RuntimeError):
    """Promotion refused: an evaluation is missing, failed or not finite."""


@dataclass(frozen=True)
class Candidate:
    name: str
    run_id: str
    model_uri: str
    data_hash: str | None
    metrics: dict


@dataclass
class PromotionDecision:
    decision: str  # "champion" or "challenger"
    reason: str
    metric: str
    min_delta: float
    candidate: str
    candidate_version: str | None
    candidate_score: float
    champion_version: str | None = None
    champion_score: float | None = None
    champion_rescored: bool = False
    registered_model: str = ""
    selection_split: str = SELECTION_SPLIT
    candidate_test_score: float | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def selection_score(metrics: dict, metric: str) -> float | None:
    """A model's ``metric`` on the selection (validation) split, from its metrics JSON."""
    value = (metrics.get(SELECTION_SPLIT) or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def gather_candidates(
    names: list[str], metrics_dir: Path, eval_dir: Path, metric: str
) -> list[Candidate]:
    """Every configured model's evaluation; refuse when any is missing or not finite."""
    found, problems = [], []
    for name in names:
        metrics_path, run_path = metrics_dir / f"{name}.json", eval_dir / name / "mlflow.json"
        if not metrics_path.exists() or not run_path.exists():
            problems.append(f"{name}: no evaluation ({metrics_path} or {run_path} missing)")
            continue
        metrics, run = read_json(metrics_path), read_json(run_path)
        value = selection_score(metrics, metric)
        if value is None or not math.isfinite(value):
            problems.append(
                f"{name}: {SELECTION_SPLIT} {metric} is missing or not finite in {metrics_path} "
                f"(rerun evaluate@{name}: dvc repro evaluate@{name})"
            )
            continue
        found.append(
            Candidate(name, run["run_id"], run["model_uri"], run.get("data_hash"), metrics)
        )
    if problems:
        raise PromotionError("no promotion: " + "; ".join(problems))
    return found


def best_candidate(candidates: list[Candidate], metric: str) -> Candidate:
    """The best by the validation score; ties go to the shorter, then the earlier name."""
    return max(candidates, key=lambda c: (selection_score(c.metrics, metric), -len(c.name), c.name))


def decide(
    candidate_score: float, champion_score: float | None, min_delta: float
) -> tuple[str, str]:
    """Pure rule: first version wins; afterwards the candidate must win by ``min_delta``."""
    if champion_score is None:
        return CHAMPION, "no champion yet: the first version becomes champion"
    if not math.isfinite(champion_score):
        return CHAMPION, "the champion's score on this validation data is not finite"
    margin = candidate_score - champion_score
    if margin > 0 and margin >= min_delta:
        return CHAMPION, f"candidate beats champion by {margin:+.4f} (needed >= {min_delta:.4f})"
    return (
        CHALLENGER,
        f"candidate margin {margin:+.4f} is below the required {min_delta:.4f}; champion kept",
    )


def split_texts(
    raw_path: Path, data_dir: Path, split: str
) -> tuple[list[str], np.ndarray, list[str], str]:
    """The exact documents (raw text) and targets of one processed split."""
    info = read_json(data_dir / "labels.json")
    settings = read_json(data_dir / "vocab.json")["text_settings"]
    data = load_dataset(data_dir, split)
    raw = pd.read_parquet(raw_path).set_index("doc_id").loc[list(data.doc_ids)]
    texts = [
        document_text(t, x, settings["include_title"])
        for t, x in zip(raw["title"], raw["text"], strict=True)
    ]
    return texts, data.y, info["labels"], info["task"]


def score_predictions(
    pred: pd.DataFrame, y_true: np.ndarray, labels: list[str], task: str, metric: str
) -> float:
    """Score a text model's output on our targets; topics outside our labels count as wrong."""
    index = {t: i for i, t in enumerate(labels)}
    if task == "singlelabel":
        y_pred = np.array([index.get(t, -1) for t in pred["top_topic"]])
        metrics, _ = compute_metrics(y_true, y_pred, labels, task)
    else:
        y_pred = np.zeros((len(pred), len(labels)), dtype=np.int8)
        for row, topics in enumerate(pred["topics"]):
            for t in topics:
                if t in index:
                    y_pred[row, index[t]] = 1
        metrics, _ = compute_metrics(y_true, y_pred, labels, task)
    return float(metrics[metric])


def model_card(
    cand: Candidate, decision: PromotionDecision, data_dir: Path, eval_dir: Path, run_params: dict
) -> str:
    lines = [
        f"# {decision.registered_model} v{decision.candidate_version} — `{cand.name}`",
        "",
        "Reuters newswire topic classifier: raw English news text in, topics with scores out.",
        "",
        "## Intended use",
        "",
        "Tagging business newswire stories (Reuters style, 1987) with topics from the label set below.",
        "Not validated on other domains, other languages or other time periods; scores are not",
        "calibrated probabilities. Keep a human in the loop for decisions with consequences.",
        "",
        *_card_data(cand, read_json(data_dir / "stats.json")),
        "## Parameters",
        "",
        *[f"- {k}: {v}" for k, v in sorted(run_params.items()) if k.startswith("model.")],
        "",
        *_card_metrics(cand, pd.read_csv(eval_dir / cand.name / "per_class.csv")),
        "## Promotion decision",
        "",
        f"- decision: **{decision.decision}** — {decision.reason}",
        f"- {decision.metric} on {decision.selection_split}: candidate "
        f"{decision.candidate_score:.4f}, champion "
        + (
            "—"
            if decision.champion_score is None
            else f"{decision.champion_score:.4f} (v{decision.champion_version})"
        ),
        f"- MLflow run: `{cand.run_id}`",
        "",
    ]
    return "\n".join(lines)


def _card_data(cand: Candidate, stats: dict) -> list[str]:
    splits = stats["splits"]
    return [
        "## Data",
        "",
        f"- task: {stats['task']} ({stats['labels']} topics, label set `{stats['label_set']}`)",
        f"- processed data hash (DVC): `{cand.data_hash}`",
        f"- documents: train {splits['train']['documents']}, validation {splits['val']['documents']}, "
        f"test {splits['test']['documents']}",
        f"- vocabulary {stats['vocab_size']} tokens, max_len {stats['max_len']}, "
        f"test truncation rate {splits['test']['truncation_rate']:.1%}, OOV rate {splits['test']['oov_rate']:.1%}",
        "",
    ]


def _card_metrics(cand: Candidate, per_class: pd.DataFrame) -> list[str]:
    weak = per_class[per_class["support"] >= 5].sort_values("f1").head(8)
    return [
        "## Metrics",
        "",
        "Validation chose this model and its threshold; test only reports.",
        "",
        # Lists, not tables: the registry page renders markdown tables without cell padding.
        *[
            f"- **{k}**: validation {cand.metrics[SELECTION_SPLIT][k]:.4f}, "
            f"test {cand.metrics[k]:.4f}"
            for k in ("accuracy", "micro_f1", "macro_f1", "weighted_f1")
            if k in cand.metrics and k in cand.metrics[SELECTION_SPLIT]
        ],
        "",
        "## Weakest topics (test support >= 5)",
        "",
        *[
            f"- **{r.label}**: F1 {r.f1:.3f} (precision {r.precision:.3f}, recall "
            f"{r.recall:.3f}, {int(r.support)} test documents)"
            for r in weak.itertuples()
        ],
        "",
    ]


def run_promote(
    model_names: list[str],
    cfg: PromotionConfig,
    metrics_dir: Path,
    eval_dir: Path,
    data_dir: Path,
    raw_path: Path,
    output: Path,
) -> PromotionDecision:
    from rnnops.systems import tracking

    metric = cfg.metric
    candidates = gather_candidates(model_names, metrics_dir, eval_dir, metric)
    unfinished = [
        f"{c.name} ({status})"
        for c in candidates
        if (status := tracking.run_status(c.run_id)) != "FINISHED"
    ]
    if unfinished:
        raise PromotionError(f"no promotion: MLflow runs not finished: {', '.join(unfinished)}")
    cand = best_candidate(candidates, metric)
    score = selection_score(cand.metrics, metric)
    name = cfg.registered_model
    log.info("candidate: %s (%s %s %.4f)", cand.name, SELECTION_SPLIT, metric, score)

    with tracking.file_lock(tracking.registry_lock_path()):
        # Re-read the champion under the lock: another promotion may have just moved it.
        champion = tracking.get_alias_version(name, CHAMPION)
        champion_score, rescored = (
            _champion_score(champion, name, cand.data_hash, metric, raw_path, data_dir)
            if champion is not None
            else (None, False)
        )
        verdict, reason = decide(score, champion_score, cfg.min_delta)
        version = tracking.register_version(cand.model_uri, name, _version_tags(cand))
        decision = PromotionDecision(
            decision=verdict,
            reason=reason,
            metric=metric,
            min_delta=cfg.min_delta,
            candidate=cand.name,
            candidate_version=version,
            candidate_score=score,
            champion_version=str(champion.version) if champion is not None else None,
            champion_score=champion_score,
            champion_rescored=rescored,
            registered_model=name,
            candidate_test_score=cand.metrics.get(metric),
        )
        tracking.set_version_tags(name, version, _decision_tags(decision))
        tracking.set_alias(name, verdict, version)
    run_params = tracking.run_params(cand.run_id)
    card = model_card(cand, decision, data_dir, eval_dir, run_params)
    tracking.describe_version(name, version, card)
    tracking.log_run_text(cand.run_id, card, "model_card.md")
    write_json(output, asdict(decision))
    log.info("%s v%s -> %s: %s", name, version, verdict, reason)
    return decision


def _champion_score(
    champion: Any,  # an MLflow ModelVersion
    name: str,
    data_hash: str | None,
    metric: str,
    raw_path: Path,
    data_dir: Path,
) -> tuple[float, bool]:
    """The champion's selection score on the candidate's data, and whether it was rescored:
    its stored score when it was evaluated on the same data, else a fresh one on this
    validation split."""
    from rnnops.systems import tracking

    tags = dict(champion.tags)
    stored = tags.get(f"selection.{metric}")
    if tags.get(contract.DATA_HASH_TAG) == data_hash and stored is not None:
        return float(stored), False
    log.info(
        "champion v%s was evaluated on other data; scoring it on this %s split",
        champion.version,
        SELECTION_SPLIT,
    )
    texts, y_true, labels, task = split_texts(raw_path, data_dir, "val")
    model = tracking.load_text_model(f"models:/{name}/{champion.version}")
    pred = model.predict(pd.DataFrame({"text": texts}))
    return score_predictions(pred, y_true, labels, task, metric), True


def _version_tags(cand: Candidate) -> dict[str, str]:
    """What a registered version says of its run: the model, the data, its metrics."""
    return {
        contract.MODEL_TAG: cand.name,
        "rnnops.run_id": cand.run_id,
        contract.DATA_HASH_TAG: cand.data_hash or "unknown",
        **{f"metric.{k}": str(v) for k, v in cand.metrics.items() if isinstance(v, float)},
        **{
            f"selection.{k}": str(v)
            for k, v in cand.metrics[SELECTION_SPLIT].items()
            if isinstance(v, float)
        },
    }


def _decision_tags(decision: PromotionDecision) -> dict[str, str]:
    """The promotion decision on the version, read by the UI and the champion/challenger gate."""
    champion_score = decision.champion_score
    return {
        contract.PROMOTION_DECISION_TAG: decision.decision,
        contract.PROMOTION_REASON_TAG: decision.reason,
        "promotion.metric": decision.metric,
        "promotion.selection_split": SELECTION_SPLIT,
        "promotion.candidate_score": f"{decision.candidate_score:.6f}",
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.champion_score": "none" if champion_score is None else f"{champion_score:.6f}",
        "promotion.decided_at": decision.decided_at,
    }


# A sweep runs every point as a DVC experiment whose promote stage only records its
# candidate; the sweep then sends its single best point through run_promote, so the
# gate (margin, lock, champion re-read) is applied once per sweep, not once per point.
DEFER_ENV = contract.PROMOTE_MODE_ENV
DEFERRED = "deferred"


def promotion_deferred() -> bool:
    import os

    return os.environ.get(DEFER_ENV, "").lower() == "record"


def record_candidate(
    model_names: list[str], cfg: PromotionConfig, metrics_dir: Path, eval_dir: Path, output: Path
) -> dict:
    """Record this execution's best candidate without registering it (sweep points)."""
    candidates = gather_candidates(model_names, metrics_dir, eval_dir, cfg.metric)
    cand = best_candidate(candidates, cfg.metric)
    record = {
        "decision": DEFERRED,
        "reason": f"{DEFER_ENV}=record: a sweep promotes its best point once, at its end",
        "metric": cfg.metric,
        "min_delta": cfg.min_delta,
        "candidate": cand.name,
        "candidate_run_id": cand.run_id,
        "selection_split": SELECTION_SPLIT,
        "candidate_score": selection_score(cand.metrics, cfg.metric),
        "registered_model": cfg.registered_model,
    }
    write_json(output, record)
    return record


def promotion_summary(decision: PromotionDecision) -> str:
    return json.dumps(asdict(decision), indent=2)
