"""The served model: loading ``models:/NAME@ALIAS``, refusing broken versions, and
turning the pyfunc's frame into JSON rows.

:class:`ModelHolder` loads through :mod:`rnnops.systems.tracking`, pinned to the version the
alias points at, and swaps a new model in only after it loaded (Keras safe mode) and
answered a test prediction, so a broken model is refused while the previous one keeps
serving. Failures become :class:`ModelLoadError` with the status ``/reload`` answers.
"""

from __future__ import annotations

import logging
import math
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rnnops.core.config import DEFAULT_BATCH_SIZES

log = logging.getLogger(__name__)

# A model must answer these before it serves; three sizes also warm the compiled
# predict function up for the batch sizes requests bring.
SMOKE_TEXTS = (
    "Oil prices rose after OPEC agreed to cut crude output.",
    "The company reported higher quarterly profit and raised its dividend.",
    "Wheat and corn exports fell as farmers held back the harvest.",
)

# --------------------------------------------------------------------------- responses


class NonFiniteScoresError(ValueError):
    """The model produced NaN or infinite scores; they are not sent."""


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise NonFiniteScoresError("the model produced non-finite scores")
    return number


PREDICTION_COLUMNS = ("topics", "scores", "top_topic", "top_score")
COVERAGE_COLUMNS = ("tokens", "known_tokens", "oov_rate", "note")


class NotATopicModelError(ValueError):
    """The model's output is not rnnops' topics frame."""


def predictions_to_json(frame: Any) -> list[dict[str, Any]]:
    """The pyfunc's output frame as JSON-ready rows; non-finite scores raise.

    The coverage fields (``tokens``, ``known_tokens``, ``oov_rate``, ``note``) are passed
    on when the model gives them (versions registered before they existed do not).
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in getattr(frame, "columns", ())]
    if missing:
        raise NotATopicModelError(
            f"its predictions lack the column(s) {', '.join(missing)} that an rnnops topic "
            "model returns"
        )
    # Whole columns as lists once: indexing the frame row by row costs a third of a
    # batch's serving time.
    extra = {c: frame[c].tolist() for c in COVERAGE_COLUMNS if c in frame.columns}
    rows = []
    for i, (topics, scores, top_topic, top_score) in enumerate(
        zip(
            frame["topics"].tolist(),
            frame["scores"].tolist(),
            frame["top_topic"].tolist(),
            frame["top_score"].tolist(),
            strict=True,
        )
    ):
        row = {
            "topics": [str(t) for t in topics],
            "scores": [_finite(s) for s in scores],
            "top_topic": str(top_topic),
            "top_score": _finite(top_score),
        }
        for column, values in extra.items():
            value = values[i]
            if column == "note":
                row["note"] = str(value) if isinstance(value, str) and value else None
            elif column == "oov_rate":
                row["oov_rate"] = _finite(value)
            else:
                row[column] = int(value)
        rows.append(row)
    return rows


def rows_to_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The predictor's rows as sent: non-finite numbers raise, an empty note is null."""
    for row in rows:
        for score in row["scores"]:
            _finite(score)
        _finite(row["top_score"])
        _finite(row["oov_rate"])
        row["note"] = row["note"] or None
    return rows


# --------------------------------------------------------------------------- models


class ModelLoadError(RuntimeError):
    """A model could not be resolved, loaded or did not answer; the previous one keeps serving.

    ``status`` is what ``/reload`` answers (404: no such model, 503: the tracking server
    cannot be reached, 500: the model was refused) and ``cause`` names the case.
    """

    def __init__(self, message: str, status: int = 500, cause: str = "model_refused") -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


_UNREACHABLE = (
    "connection refused",
    "failed to establish a new connection",
    "max retries exceeded",
    "timed out",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "connection reset",
    "remote end closed connection",
)


def _store() -> str:
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:  # the message must not fail for want of the URI
        return "the tracking store"


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the tracking server could not be reached."""
    names = {type(e).__name__ for e in _chain(exc)}
    chained = " ".join(str(e) for e in _chain(exc)).lower()
    return bool(
        names & {"StoreUnreachableError", "ConnectionError", "Timeout", "ConnectTimeout"}
    ) or any(k in chained for k in _UNREACHABLE)


def unreachable_failure(action: str, exc: BaseException) -> ModelLoadError:
    """The 503 for a tracking server that refuses or times out while ``action``."""
    if any(type(e).__name__ == "StoreUnreachableError" for e in _chain(exc)):
        return ModelLoadError(_clip(exc), 503, "tracking_unreachable")  # names what to check
    return ModelLoadError(
        f"could not {action}: the MLflow tracking server at {_store()} "
        "(MLFLOW_TRACKING_URI) cannot be reached (refused or timed out); start it or "
        "point MLFLOW_TRACKING_URI at the store that holds the model. The current model "
        "keeps serving",
        503,
        "tracking_unreachable",
    )


def describe_resolve_failure(model_uri: str, exc: BaseException) -> ModelLoadError:
    """Why the alias could not be resolved, in words that say what to do, with its status."""
    if _unreachable(exc):
        return unreachable_failure(f"resolve {model_uri}", exc)
    text = _clip(exc)
    names = {type(e).__name__ for e in _chain(exc)}
    store = _store()
    if names & {"ModelNotFoundError", "NoStoreError"} or "RESOURCE_DOES_NOT_EXIST" in text:
        message = text if model_uri in text else f"{model_uri} not found in {store}: {text}"
        return ModelLoadError(message, 404, "model_not_found")
    return ModelLoadError(
        f"could not resolve {model_uri} in {store}: {type(exc).__name__}: {text}",
        502,
        "tracking_error",
    )


def topic_predictor(pyfunc: Any) -> Any | None:
    """The :class:`~rnnops.core.predictor.TopicPredictor` inside rnnops' pyfunc, else None.

    Serving calls it directly: the pyfunc's ``predict`` checks the input frame against
    the signature and builds an output frame, which costs more than the network on one
    document; the request layer has already checked that every document is a string.
    """
    from rnnops.core.predictor import TopicPredictor

    try:
        predictor = pyfunc.unwrap_python_model().predictor
    except (AttributeError, TypeError, ValueError):
        return None
    return predictor if isinstance(predictor, TopicPredictor) else None


def load_pyfunc(uri: str, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> Any:
    """Load the text-in pyfunc (Keras safe mode, see rnnops.core.models.load_model) for
    serving, its network compiled for ``batch_sizes`` (see rnnops.apps.serving_network)."""
    from rnnops.apps.serving_network import serving_network
    from rnnops.systems import tracking

    pyfunc = tracking.load_text_model(uri)
    predictor = topic_predictor(pyfunc)
    if predictor is not None:  # else not rnnops' TopicModel: serve it as it is
        check_ids = predictor.encode(SMOKE_TEXTS)
        predictor.model = serving_network(predictor.model, batch_sizes, check_ids)
    return pyfunc


def describe_load_failure(uri: str, exc: BaseException) -> str:
    """A message that says what is wrong with the model files, not only what failed."""
    text = _clip(exc)
    if 'does not have the "python_function" flavor' in text:
        return (
            f"refused {uri}: it is a model of another flavour (its MLmodel has no "
            "python_function flavour); register the text-in model that `rnnops evaluate` "
            "logs (artifact path model)"
        )
    if (
        isinstance(exc, FileNotFoundError)
        or "No such artifact" in text
        or "No such file or directory" in text
    ):
        return (
            f"refused {uri}: its files are missing from the artifact store (deleted, or a "
            "store on another machine); register the version again from a run that has them"
        )
    # Keras reports an unreadable archive as "File not found ... accessible `.keras` zip file".
    if (
        isinstance(exc, (zipfile.BadZipFile, EOFError))
        or "`.keras` zip file" in text
        or "Bad CRC-32" in text
    ):
        return (
            f"refused {uri}: its model file is truncated or corrupt (not a readable .keras archive)"
        )
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"refused {uri}: its MLmodel names a loader module that is not installed here "
            f"({exc.name or text}); only models logged by rnnops (or installed flavors) load"
        )
    if "safe_mode=False" in text or "enable_unsafe_deserialization" in text:
        return (
            f"refused {uri}: it needs unsafe deserialization (arbitrary Python code such as a "
            f"Lambda layer), which Keras safe mode forbids. Keras: {text}"
        )
    return f"could not load {uri}: {type(exc).__name__}: {text}"


@dataclass
class ServedModel:
    """One loaded model version and what the server says about it."""

    pyfunc: Any = field(repr=False)
    name: str | None
    alias: str | None
    version: str | None
    uri: str
    run_id: str | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "uri": self.uri,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at,
        }

    def __post_init__(self) -> None:
        self._predictor = topic_predictor(self.pyfunc)

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        # Keras models are not safe to call from several threads at once.
        with self._lock:
            if self._predictor is not None:
                return rows_to_json(self._predictor.predict_rows(list(texts)))
            import pandas as pd

            frame = self.pyfunc.predict(pd.DataFrame({"text": list(texts)}))
        return predictions_to_json(frame)


Resolver = Callable[[str], dict]
Loader = Callable[[str], Any]


class ModelHolder:
    """The model being served; :meth:`reload` swaps in the alias's version only if it works."""

    def __init__(
        self,
        name: str,
        alias: str,
        resolve: Resolver | None = None,
        load: Loader | None = None,
    ) -> None:
        from rnnops.systems import tracking

        self.name = name
        self.alias = alias
        self._resolve = resolve or tracking.resolve_model_version
        self._load = load or load_pyfunc
        self._current: ServedModel | None = None
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def resolve(self, version: str | None = None) -> dict:
        """The registered version behind the alias (or ``version``); ModelLoadError if none."""
        wanted = self.model_uri if version is None else f"models:/{self.name}/{version}"
        try:
            return self._resolve(wanted)
        except Exception as exc:
            raise describe_resolve_failure(wanted, exc) from exc

    def reload(self, version: str | None = None) -> tuple[ServedModel, bool]:
        """Load the version the alias points at now (or ``version`` of the registered
        model: what the other workers of one server load, see
        :mod:`rnnops.apps.serving_workers`); return it and whether it changed.

        On any failure raise :class:`ModelLoadError` and keep serving the current model.
        """
        with self._reload_lock:
            try:
                ref = self.resolve(version)
            except ModelLoadError as failure:
                self.last_error = str(failure)
                raise
            current = self._current
            if current is not None and ref.get("version") and current.version == ref["version"]:
                self.last_error = None
                return current, False
            uri = ref["uri"]
            try:
                served = ServedModel(
                    pyfunc=self._load(uri),
                    name=ref.get("name"),
                    alias=self.alias,
                    version=ref.get("version"),
                    uri=uri,
                    run_id=ref.get("run_id"),
                )
            except Exception as exc:
                failure = (
                    unreachable_failure(f"load {uri}", exc)
                    if _unreachable(exc)
                    else ModelLoadError(describe_load_failure(uri, exc))
                )
                self.last_error = str(failure)
                raise failure from exc
            for size in range(1, len(SMOKE_TEXTS) + 1):
                try:
                    served.predict(SMOKE_TEXTS[:size])
                except NotATopicModelError as exc:
                    self.last_error = (
                        f"refused {uri}: it is not an rnnops topic model: {exc} (a model of "
                        "another flavour or project under this name?)"
                    )
                    raise ModelLoadError(self.last_error) from exc
                except Exception as exc:
                    self.last_error = (
                        f"refused {uri}: it loaded but failed a test prediction "
                        f"({type(exc).__name__}: {_clip(exc)})"
                    )
                    raise ModelLoadError(self.last_error) from exc
            self._current = served
            self.last_error = None
            log.info("now serving %s (version %s)", uri, served.version)
            return served, True
