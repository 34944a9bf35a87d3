"""Ensembles: trained models combined into one Keras model that averages their scores.

An ensemble is a model like any other downstream: ``evaluate`` tunes its decision
threshold on validation, ``compare`` lists it, ``promote`` may register it, and
serving loads its single ``model.keras``. It trains nothing of its own. Its
``val_scores.npy`` is the mean of its members' held-out validation scores (taken
before any member's refit; see :mod:`rnnops.stages.train`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rnnops.core.io import atomic_path, read_json, remove_on_failure, write_json
from rnnops.core.stage_files import VAL_SCORES


class EnsembleError(ValueError):
    """The members cannot be combined (missing, or built for other data)."""


@dataclass
class EnsembleSummary:
    model: str
    kind: str
    members: list[str]
    trainable_params: int
    train_seconds: float | None
    epochs_run: None = None
    mlflow_run_id: str | None = None


def combine(members: dict, name: str = "ensemble"):
    """Pure core: one Keras model whose output is the mean of the members' outputs.

    Every member must take the same input (token ids of one length) and give scores
    over the same labels with the same activation.
    """
    import keras

    if len(members) < 2:
        raise EnsembleError(f"an ensemble needs at least two members, got {list(members)}")
    shapes = {n: (tuple(m.input_shape[1:]), tuple(m.output_shape[1:])) for n, m in members.items()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{n}: input {i}, output {o}" for n, (i, o) in shapes.items())
        raise EnsembleError(
            f"ensemble {name}: members disagree on input length or labels ({listed}); "
            "retrain them on the same data/processed"
        )
    activations = {n: m.layers[-1].get_config().get("activation") for n, m in members.items()}
    if len(set(activations.values())) != 1:
        raise EnsembleError(
            f"ensemble {name}: members mix output activations {activations}; "
            "combine models trained for the same task"
        )
    input_shape = next(iter(shapes.values()))[0]
    inputs = keras.Input(shape=input_shape, dtype="int32", name="token_ids")
    outputs = []
    for member, model in members.items():
        # Nested models need distinct names; the member's name keeps them apart.
        model.name = f"member_{member}"
        outputs.append(model(inputs))
    mean = keras.layers.Average(name="mean_of_scores")(outputs)
    return keras.Model(inputs, mean, name=f"ensemble_{name}")


def run_ensemble(
    name: str,
    members: list[str],
    models_dir: str | Path,
    output_dir: str | Path,
    run_id: str | None = None,
) -> EnsembleSummary:
    """Load the members from ``models_dir/<member>/``, combine, write ``output_dir``."""
    from rnnops.core.models import load_model

    models_dir, output_dir = Path(models_dir), Path(output_dir)
    missing = [m for m in members if not (models_dir / m / "model.keras").exists()]
    if missing:
        raise EnsembleError(
            f"ensemble {name}: no trained model for {', '.join(missing)} under {models_dir}; "
            f"run their train stages first (dvc repro train@{missing[0]})"
        )
    loaded = {m: load_model(models_dir / m / "model.keras") for m in members}
    model = combine(loaded, name)
    infos = [
        read_json(models_dir / m / "train.json")
        for m in members
        if (models_dir / m / "train.json").exists()
    ]
    seconds = [i.get("train_seconds") for i in infos]
    summary = EnsembleSummary(
        model=name,
        kind="ensemble",
        members=list(members),
        trainable_params=int(sum(int(w.numpy().size) for w in model.trainable_weights)),
        train_seconds=round(sum(seconds), 3)
        if len(seconds) == len(members) and all(s is not None for s in seconds)
        else None,
        mlflow_run_id=run_id,
    )
    missing_scores = [m for m in members if not (models_dir / m / VAL_SCORES).exists()]
    if missing_scores:
        raise EnsembleError(
            f"ensemble {name}: no {VAL_SCORES} for {', '.join(missing_scores)} (trained by an "
            f"older rnnops); retrain them (dvc repro train@{missing_scores[0]})"
        )
    val_scores = np.mean([np.load(models_dir / m / VAL_SCORES) for m in members], axis=0)
    outputs = (output_dir / "model.keras", output_dir / "train.json", output_dir / VAL_SCORES)
    with remove_on_failure(*outputs):
        with atomic_path(output_dir / "model.keras") as tmp:
            model.save(tmp)
        with atomic_path(output_dir / VAL_SCORES) as tmp, open(tmp, "wb") as f:
            np.save(f, val_scores)
        write_json(output_dir / "train.json", asdict(summary))
    return summary
