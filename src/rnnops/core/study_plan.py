"""The RNN-vs-LSTM study as a plan: its file validated, its cells sized, its points named.

A study file (``study.yaml``) names tasks, seeds, recurrent cells at a matched budget of
recurrent weights, long-range probes and the article's overfitting remedies. The plan
turns it into DVC experiment points: one per (task, seed, probe) holding every cell as a
model of its own (with and without the embedding skip, beside the skip-only model), one
per (task, seed) for the remedies on the article's network and one per training-set
fraction for its learning curve. Each point is a set of ``dvc exp run -S`` overrides on
``params.yaml``: the default models deleted (``~models.rnn``), the study's added
(``+models.lstm_bi.units``). A point's name carries a hash of those overrides, so an
edited study reruns exactly the points it changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rnnops.core.config import ConfigError, ModelConfig, PreprocessConfig, format_validation_error

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Overrides = dict[str, Any]
# What the default probe (the data as params.yaml preprocesses it) is called in results.
STANDARD_PROBE = "standard"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Probe(_Strict):
    """Preprocess settings under which the topic's evidence sits late in the document."""

    preprocess: Overrides = Field(min_length=1)
    # The cells retrained under the probe (null: all of them).
    cells: list[str] | None = None


class Remedies(_Strict):
    """The article's overfitting remedies, each against the same baseline network."""

    article: str = "rnn"  # the params.yaml model they apply to
    baseline: Overrides = {}  # what the baseline removes from it (no remedy at all)
    variants: dict[Slug, Overrides] = Field(min_length=1)
    # Learning curve: the baseline trained on these shares of the training documents.
    train_fractions: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = []


class QuickForm(_Strict):
    """``make study QUICK=1``: a subset of the study and cheaper training."""

    tasks: list[str] | None = None
    seeds: list[int] | None = None
    probes: list[str] | None = None
    cells: list[str] | None = None
    with_skip: bool | None = None
    probe_cells: list[str] | None = None  # the cells each probe retrains
    remedies: bool = True
    train_fractions: list[Annotated[float, Field(gt=0.0, lt=1.0)]] | None = None
    model: Overrides = {}  # applied to every model of the study, e.g. {epochs: 5}


class StudyFile(_Strict):
    name: Slug
    tasks: dict[Slug, Overrides] = Field(min_length=1)  # task -> preprocess settings
    seeds: list[int] = Field(min_length=1)
    recipe: str = "lstm"  # the params.yaml model every cell starts from
    # Weights of the recurrent layers per cell; each cell's units are solved to match it.
    budget: Annotated[int, Field(ge=1)] | None = None
    budget_tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    cells: dict[Slug, Overrides] = Field(min_length=1)
    with_skip: bool = True  # each cell also with the embedding skip beside it
    skip: tuple[Literal["max", "mean", "attention"], ...] = ("max", "mean")
    skip_only: bool = True  # the bag-of-embeddings model: the skip with no recurrent layer
    also: list[str] = []  # params.yaml models trained as they are beside the cells
    probes: dict[Slug, Probe] = {}
    remedies: Remedies | None = None
    max_parallel: Annotated[int, Field(ge=1)] = 1
    quick: QuickForm = QuickForm()

    @model_validator(mode="after")
    def _consistent(self) -> StudyFile:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists a seed twice: {self.seeds}")
        if STANDARD_PROBE in self.probes:
            raise ValueError(f"probes: {STANDARD_PROBE!r} names the unprobed data; rename it")
        for name, probe in self.probes.items():
            unknown = set(probe.cells or []) - set(self.cells)
            if unknown:
                raise ValueError(f"probes.{name}.cells: no such cell {sorted(unknown)}")
        for key, section, known in (
            ("tasks", "tasks", self.tasks),
            ("probes", "probes", self.probes),
            ("cells", "cells", self.cells),
            ("probe_cells", "cells", self.cells),
        ):
            chosen = getattr(self.quick, key)
            if chosen is not None and set(chosen) - set(known):
                raise ValueError(
                    f"quick.{key}: {sorted(set(chosen) - set(known))} not in {section} "
                    f"({', '.join(known) or 'none'})"
                )
        if self.quick.seeds is not None and not self.quick.seeds:
            raise ValueError("quick.seeds is empty; give at least one seed")
        return self


@dataclass(frozen=True)
class StudyModel:
    """One model of a point: its params.yaml entry and what it stands for in the study."""

    name: str
    role: Literal["cell", "cell_skip", "skip_only", "also", "remedy_baseline", "remedy"]
    config: dict[str, Any]
    cell: str | None = None
    variant: str | None = None
    recurrent_weights: int = 0


@dataclass(frozen=True)
class StudyPoint:
    """One DVC experiment of the study."""

    name: str
    group: Literal["cells", "remedies", "fraction"]
    task: str
    seed: int
    probe: str
    fraction: float
    preprocess: Overrides
    models: tuple[StudyModel, ...]
    overrides: Overrides = field(repr=False)


@dataclass(frozen=True)
class StudyPlan:
    study_id: str
    points: tuple[StudyPoint, ...]
    quick: bool
    # The validated study file: what the report and the flow read (probes, budget, pace).
    study: StudyFile = field(repr=False, compare=False)


def recurrent_weights(kind: str, bidirectional: bool, layers: int, units: int, inputs: int) -> int:
    """Weights (kernels, recurrent kernels, biases) of Keras 3's recurrent layers."""
    per_direction = {
        "simple_rnn": lambda i: units * (i + units + 1),
        "lstm": lambda i: 4 * units * (i + units + 1),
        "gru": lambda i: 3 * units * (i + units + 2),  # reset_after=True: two bias vectors
    }[kind]
    directions = 2 if bidirectional else 1
    total, width = 0, inputs
    for _ in range(layers):
        total += directions * per_direction(width)
        width = directions * units
    return total


def weights_of(config: dict[str, Any]) -> int:
    """The recurrent weights of a model's params.yaml entry (0 for a bag of embeddings)."""
    return recurrent_weights(
        config["kind"],
        bool(config.get("bidirectional", False)),
        int(config.get("layers", 1)),
        int(config.get("units", 64)),
        int(config.get("embedding_dim", 64)),
    )


def units_for_budget(config: dict[str, Any], budget: int, tolerance: float, label: str) -> int:
    """The units whose recurrent weights come closest to ``budget``; an error past tolerance."""

    def weights(units: int) -> int:
        return recurrent_weights(
            config["kind"],
            bool(config.get("bidirectional", False)),
            int(config.get("layers", 1)),
            units,
            int(config["embedding_dim"]),
        )

    best = min(range(1, 4097), key=lambda u: abs(weights(u) - budget))
    off = abs(weights(best) - budget) / budget
    if off > tolerance:
        raise ConfigError(
            f"study: cell {label} cannot match budget {budget}: its closest size, {best} "
            f"units, has {weights(best)} recurrent weights ({off:.0%} off, tolerance "
            f"{tolerance:.0%}); change budget or budget_tolerance"
        )
    return best


def parse_study(raw: Any, source: str = "study.yaml") -> StudyFile:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a study file is a mapping (name, tasks, seeds, cells, ...)")
    try:
        return StudyFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def _check_model(config: dict[str, Any], label: str) -> None:
    try:
        ModelConfig.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"study {label}")) from None


def _check_preprocess(base: dict[str, Any], settings: Overrides, label: str) -> None:
    try:
        PreprocessConfig.model_validate({**base, **settings})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"study {label}")) from None


def _named_model(params_raw: dict, name: str, where: str) -> dict[str, Any]:
    models = params_raw.get("models") or {}
    if name not in models:
        raise ConfigError(
            f"study {where}: params.yaml has no model {name!r} (it has {', '.join(models)})"
        )
    return dict(models[name])


def cell_models(study: StudyFile, params_raw: dict, extra: Overrides) -> list[StudyModel]:
    """The models of a cells point: each cell (and its skip twin), the skip-only model."""
    recipe = {**_named_model(params_raw, study.recipe, "recipe"), "embedding_skip": []}
    out = []
    for cell, settings in study.cells.items():
        if "units" in settings and study.budget is not None:
            raise ConfigError(
                f"study: cell {cell} sets units, but with a budget the study sizes every cell "
                "itself; remove units from the cell or the budget from the study"
            )
        if settings.get("layers", 1) == 0:
            raise ConfigError(
                f"study: cell {cell} has layers: 0; the skip-only model is added by the study "
                "itself (skip_only: true)"
            )
        # One direction unless the cell asks for two: the recipe's own choice does not leak.
        config = {**recipe, "bidirectional": False, **settings, **extra}
        _check_model(config, f"cell {cell}")
        if study.budget is not None:
            config["units"] = units_for_budget(config, study.budget, study.budget_tolerance, cell)
        weights = weights_of(config)
        out.append(StudyModel(cell, "cell", config, cell, recurrent_weights=weights))
        if study.with_skip:
            skipped = {**config, "embedding_skip": list(study.skip)}
            out.append(
                StudyModel(f"{cell}_skip", "cell_skip", skipped, cell, recurrent_weights=weights)
            )
    if study.skip_only:
        out.append(
            StudyModel(
                "boe",
                "skip_only",
                {**recipe, **extra, "layers": 0, "embedding_skip": list(study.skip)},
            )
        )
    for name in study.also:
        config = {**_named_model(params_raw, name, "also"), **extra}
        out.append(StudyModel(name, "also", config, recurrent_weights=weights_of(config)))
    names = [m.name for m in out]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise ConfigError(f"study: two models would be named {sorted(clash)}; rename a cell")
    return out


def remedy_models(remedies: Remedies, params_raw: dict, extra: Overrides) -> list[StudyModel]:
    base = {**_named_model(params_raw, remedies.article, "remedies.article"), **remedies.baseline}
    base = {**base, **extra}
    _check_model(base, "remedies.baseline")
    out = [StudyModel("article", "remedy_baseline", base, recurrent_weights=weights_of(base))]
    for variant, settings in remedies.variants.items():
        config = {**base, **settings}
        _check_model(config, f"remedies.variants.{variant}")
        out.append(
            StudyModel(
                f"article_{variant}",
                "remedy",
                config,
                variant=variant,
                recurrent_weights=weights_of(config),
            )
        )
    return out


def point_overrides(params_raw: dict, preprocess: Overrides, models, seed: int) -> Overrides:
    """``dvc exp run -S`` overrides: default models and ensembles out, the point's models in."""
    overrides: Overrides = {f"preprocess.{k}": v for k, v in preprocess.items()}
    overrides.update({f"~models.{m}": None for m in params_raw.get("models") or {}})
    overrides.update({f"~ensembles.{e}": None for e in params_raw.get("ensembles") or {}})
    for model in models:
        for key, value in {**model.config, "seed": seed}.items():
            overrides[f"+models.{model.name}.{key}"] = value
    return overrides


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class _Layout(NamedTuple):
    """One kind of point of a task, before it is crossed with the seeds."""

    task: str
    group: Literal["cells", "remedies", "fraction"]
    probe: str
    fraction: float
    preprocess: Overrides
    models: list[StudyModel]
    label: str


def _quick_view(study: StudyFile, q: QuickForm) -> StudyFile:
    """The study as its quick form sees it: fewer cells, tasks, seeds and probes."""
    probes = {p: study.probes[p] for p in (q.probes if q.probes is not None else study.probes)}
    if q.probe_cells is not None:
        probes = {n: spec.model_copy(update={"cells": q.probe_cells}) for n, spec in probes.items()}
    return study.model_copy(
        update={
            "tasks": {t: study.tasks[t] for t in (q.tasks or study.tasks)},
            "seeds": q.seeds or study.seeds,
            "probes": probes,
            "cells": {c: study.cells[c] for c in (q.cells or study.cells)},
            "with_skip": study.with_skip if q.with_skip is None else q.with_skip,
        }
    )


def _layouts(study: StudyFile, params_raw: dict, q: QuickForm, quick: bool) -> list[_Layout]:
    pre_base = dict(params_raw.get("preprocess") or {})
    cells = cell_models(study, params_raw, q.model)
    remedies = (
        remedy_models(study.remedies, params_raw, q.model)
        if study.remedies and (q.remedies or not quick)
        else []
    )
    fractions = (
        q.train_fractions
        if q.train_fractions is not None
        else (study.remedies.train_fractions if study.remedies else [])
    )
    out = []
    for task, settings in study.tasks.items():
        _check_preprocess(pre_base, settings, f"tasks.{task}")
        out.append(_Layout(task, "cells", STANDARD_PROBE, 1.0, dict(settings), cells, "cells"))
        for probe, spec in study.probes.items():
            pre = {**settings, **spec.preprocess}
            _check_preprocess(pre_base, pre, f"probes.{probe}")
            chosen = set(spec.cells if spec.cells is not None else study.cells)
            probed = [m for m in cells if m.cell in chosen or m.role == "skip_only"]
            out.append(_Layout(task, "cells", probe, 1.0, pre, probed, f"cells-{probe}"))
        if remedies:
            out.append(
                _Layout(task, "remedies", STANDARD_PROBE, 1.0, dict(settings), remedies, "remedies")
            )
            for f in fractions:
                pre = {**settings, "train_fraction": f}
                out.append(
                    _Layout(task, "fraction", STANDARD_PROBE, f, pre, remedies[:1], f"frac{f:g}")
                )
    return out


def plan_study(study: StudyFile, params_raw: dict, quick: bool = False) -> StudyPlan:
    """Every point of the study (or of its quick form), validated before anything runs."""
    q = study.quick if quick else QuickForm()
    study = _quick_view(study, q)
    points = []
    for layout in _layouts(study, params_raw, q, quick):
        for seed in study.seeds:
            overrides = point_overrides(params_raw, layout.preprocess, layout.models, seed)
            slug = layout.label.replace(".", "")
            name = f"{study.name}-{layout.task}-s{seed}-{slug}-{_digest(overrides)[:7]}"
            points.append(
                StudyPoint(
                    name,
                    layout.group,
                    layout.task,
                    seed,
                    layout.probe,
                    layout.fraction,
                    layout.preprocess,
                    tuple(layout.models),
                    overrides,
                )
            )
    study_id = f"{study.name}{'-quick' if quick else ''}-{_digest([p.name for p in points])[:8]}"
    return StudyPlan(study_id, tuple(points), quick, study)
