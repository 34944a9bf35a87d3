"""Ablation twins: the same network without its recurrent layer, or without its skip.

A model with an embedding skip has two twins. Its **skip-only** twin keeps the
embedding, the skip poolings and the classifier and drops the recurrent layers
(``layers: 0``, a bag-of-embeddings model); its **no-skip** twin keeps the recurrent
path and drops the skip (``embedding_skip: []``). Beside its twins, a model's score
says what its recurrent layer and its skip each add. Pure: configs in, configs out.
"""

from __future__ import annotations

from rnnops.core.config import ModelConfig

SKIP_ONLY, NO_SKIP = "skip_only", "no_skip"
# Keys that only shape the recurrent layers: a model without them ignores them.
RECURRENT_KEYS = (
    "kind",
    "bidirectional",
    "units",
    "pooling",
    "recurrent_dropout",
    "read_backwards",
)


def skip_only_twin(cfg: ModelConfig) -> ModelConfig:
    return cfg.model_copy(update={"layers": 0})


def no_skip_twin(cfg: ModelConfig) -> ModelConfig:
    return cfg.model_copy(update={"embedding_skip": ()})


def twins_of(cfg: ModelConfig) -> dict[str, ModelConfig]:
    """The twins a model has: none without a skip or without recurrent layers."""
    if not cfg.embedding_skip or cfg.layers == 0:
        return {}
    return {SKIP_ONLY: skip_only_twin(cfg), NO_SKIP: no_skip_twin(cfg)}


def _signature(cfg: ModelConfig) -> dict:
    data = cfg.model_dump(mode="json")
    if cfg.layers == 0:
        for key in RECURRENT_KEYS:
            data.pop(key)
    if cfg.layers == 0 or not cfg.embedding_skip:
        data.pop("skip_dropout")  # it drops the skip beside a recurrent path only
    return data


def same_network(a: ModelConfig, b: ModelConfig) -> bool:
    """Equal configs, ignoring the recurrent keys of models that have no recurrent layer."""
    return _signature(a) == _signature(b)


def find_twins(models: dict[str, ModelConfig]) -> dict[str, dict[str, str | None]]:
    """For every model with a skip and recurrent layers: the names of its twins among
    ``models`` (``None`` where the run has no such model)."""
    found = {}
    for name, cfg in models.items():
        wanted = twins_of(cfg)
        if not wanted:
            continue
        found[name] = {
            role: next(
                (other for other, o in models.items() if other != name and same_network(o, twin)),
                None,
            )
            for role, twin in wanted.items()
        }
    return found


def ablation_rows(
    twins: dict[str, dict[str, str | None]], metrics: dict[str, dict], keys=("micro_f1", "macro_f1")
) -> list[dict]:
    """One row per model with a skip: its test scores, its twins' and the differences."""
    rows = []
    for name, roles in twins.items():
        row = {"model": name, **{k: metrics[name].get(k) for k in keys}}
        for role in (SKIP_ONLY, NO_SKIP):
            twin = roles.get(role)
            row[f"{role}_twin"] = twin
            for key in keys:
                value = metrics.get(twin, {}).get(key) if twin else None
                row[f"{role}_{key}"] = value
                row[f"gain_over_{role}_{key}"] = (
                    None if value is None or row[key] is None else row[key] - value
                )
        rows.append(row)
    return rows


def bag_of_embeddings_gaps(
    models: dict[str, ModelConfig], metrics: dict[str, dict], keys=("micro_f1", "macro_f1")
) -> list[dict]:
    """Each recurrent model against each bag-of-embeddings model (``layers: 0``) of the run:
    what the recurrent layers score beyond the bag of words (test metrics)."""
    bags = [n for n, c in models.items() if c.layers == 0 and n in metrics]
    rows = []
    for name, cfg in models.items():
        if cfg.layers == 0 or name not in metrics:
            continue
        for bag in bags:
            row = {"model": name, "bag": bag}
            for key in keys:
                a, b = metrics[name].get(key), metrics[bag].get(key)
                row[key], row[f"bag_{key}"] = a, b
                row[f"gain_{key}"] = None if a is None or b is None else a - b
            rows.append(row)
    return rows
