"""Dotted-key overrides of a parameter mapping, in ``dvc exp run -S``'s grammar.

Kept apart from :mod:`rnnops.core.config` because they edit the raw mapping before any
validation: sweeps, studies, reproduction and test projects build parameter files with them.
"""

from __future__ import annotations

import copy
from typing import Any


class ConfigError(ValueError):
    """Raised when ``params.yaml`` (or an override) is invalid."""


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key overrides (``models.lstm.units``) applied.

    The prefixes of ``dvc exp run -S`` (Hydra's override grammar) mean the same here:
    ``~models.rnn`` deletes a key (its value is ignored), ``+models.gru.units`` adds one.
    Overrides apply in order, so a deleted model can be added back with other keys.
    """
    result = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        delete, key = dotted.startswith("~"), dotted.lstrip("~+")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if not delete else node.get(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted}: {part} is not a mapping")
        if delete:
            if parts[-1] not in node:
                raise ConfigError(f"override {dotted}: there is no {key} to delete")
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return result
