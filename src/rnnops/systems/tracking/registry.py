"""The Model Registry: versions, aliases, their promotion tags, and resolving model URIs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from rnnops.core import contract
from rnnops.systems.tracking.store import (
    RESERVED_ALIASES,
    TrackingError,
    _sqlite_path,
    project_root,
)

log = logging.getLogger(__name__)


def get_alias_version(name: str, alias: str):
    import mlflow

    client = mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def register_version(model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client.create_registered_model(
                name, description="Reuters topic classifier: raw text in, topics out."
            )
    version = mlflow.register_model(model_uri, name, tags=dict(tags))
    return str(version.version)


def set_alias(name: str, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    if alias.lower() in RESERVED_ALIASES or (alias.lower().startswith("v") and alias[1:].isdigit()):
        raise TrackingError(
            f"alias {alias!r} is reserved by MLflow; use another name (e.g. champion)"
        )
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise TrackingError(
            f"model {name!r} has no version {version}; nothing was changed"
        ) from None
    client.set_registered_model_alias(name, alias, version)


def set_version_tags(name: str, version: str, tags: Mapping[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def describe_version(name: str, version: str, description: str) -> None:
    import mlflow

    mlflow.MlflowClient().update_model_version(name, version, description=description)


def version_info(name: str, version: str) -> dict:
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(name, version)
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "tags": dict(mv.tags),
        "aliases": list(mv.aliases),
    }


def versions_of_runs(name: str, run_ids: list[str]) -> list[dict]:
    """Registered versions of ``name`` created from ``run_ids``, with aliases and decisions."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        return []
    # search_model_versions leaves `aliases` empty on some stores: read each version itself.
    found = [client.get_model_version(name, v.version) for v in versions if v.run_id in run_ids]
    return [
        {
            "version": str(v.version),
            "run_id": v.run_id,
            "aliases": sorted(v.aliases),
            "decision": v.tags.get(contract.PROMOTION_DECISION_TAG),
            "reason": v.tags.get(contract.PROMOTION_REASON_TAG),
        }
        for v in found
    ]


def registry_lock_path() -> Path:
    """Where promotions serialise: next to the SQLite store, else in the project."""
    import mlflow

    db = _sqlite_path(mlflow.get_tracking_uri())
    base = db.parent if db else project_root()
    return base / ".rnnops-promotion.lock"


class ModelNotFoundError(TrackingError):
    """The registry answered: no such model, version or alias (retrying cannot help)."""


def resolve_model_version(model_uri: str) -> dict[str, str | None]:
    """The registered version behind ``models:/NAME@ALIAS`` or ``models:/NAME/N``.

    Returns ``name``, ``version``, ``run_id`` and ``uri``, a ``models:/NAME/N`` pinned to
    that version: loading the pinned URI means an alias that moves meanwhile cannot mix
    two versions. Other URIs (``runs:/``, paths) come back unchanged, without a version.
    """
    import mlflow

    if not model_uri.startswith("models:/"):
        return {"name": None, "version": None, "run_id": None, "uri": model_uri}
    store = mlflow.get_tracking_uri()
    db = _sqlite_path(store)
    if db is not None and not db.exists():
        raise ModelNotFoundError(
            f"no MLflow store at {db}: train and promote a model first (dvc repro), "
            "or point MLFLOW_TRACKING_URI at the store that holds it"
        )
    ref = model_uri[len("models:/") :].rstrip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.rsplit("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = ref.rpartition("/")
            if not name or not version.isdigit():
                raise ModelNotFoundError(
                    f"model URI {model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION"
                )
            mv = client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFoundError(
                f"{model_uri} not found in {store} ({exc.message}): run the pipeline to "
                "train and promote one (make run, or dvc repro), or point "
                "MLFLOW_TRACKING_URI at the store that holds it"
            ) from None
        raise TrackingError(f"could not read {model_uri} from {store}: {exc.message}") from None
    return {
        "name": mv.name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "uri": f"models:/{mv.name}/{mv.version}",
    }
