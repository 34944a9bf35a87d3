"""Typed configuration loaded from ``params.yaml``.

Every tunable of the pipeline lives in ``params.yaml``. It is validated once, up
front, into frozen pydantic models that reject unknown keys, wrong types and
impossible values with a message naming the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rnnops.core.overrides import ConfigError, apply_overrides


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class TableSource(_Strict):
    """The user's own CSV or Parquet file (``ingest.source: table``)."""

    path: str | None = None
    id_column: str | None = None
    title_column: str | None = None
    text_column: str = "text"
    label_column: str = "topics"
    label_delimiter: str = ";"
    split_column: str | None = None
    test_fraction: Fraction = 0.2
    seed: int = 42
    empty_texts: Literal["error", "drop"] = "error"


class NltkReutersSource(_Strict):
    """NLTK's Reuters corpus (``ingest.source: nltk_reuters``)."""

    # NLTK's copy holds 61 stories whose text is empty (47 train, 14 test).
    empty_texts: Literal["error", "drop"] = "drop"


class IngestConfig(_Strict):
    source: Literal["nltk_reuters", "table"] = "nltk_reuters"
    nltk_reuters: NltkReutersSource = NltkReutersSource()
    table: TableSource = TableSource()

    @model_validator(mode="after")
    def _table_needs_path(self) -> IngestConfig:
        if self.source == "table" and not self.table.path:
            raise ValueError(
                "ingest.table.path is required when ingest.source is 'table' "
                "(set it to a .csv or .parquet file)"
            )
        return self


class PreprocessConfig(_Strict):
    task: Literal["multilabel", "singlelabel"] = "multilabel"
    # multilabel: 'all' topics seen in training; singlelabel: r8, r52, top_k or list.
    label_set: Literal["all", "r8", "r52", "top_k", "list"] = "all"
    top_k: PositiveInt = 10
    topics: tuple[str, ...] = ()
    tokenizer: Literal["wordpunct", "treebank"] = "wordpunct"
    lowercase: bool = True
    include_title: bool = True
    max_vocab: Annotated[int, Field(ge=3)] = 20000
    min_freq: PositiveInt = 2
    max_len: PositiveInt = 200
    truncating: Literal["pre", "post"] = "post"
    padding: Literal["pre", "post"] = "post"
    val_fraction: Fraction = 0.1
    # Train on this share of the fitting documents (seeded, stratified like the validation
    # split; validation and test stay whole): learning curves over the training-set size.
    train_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: int = 42

    @model_validator(mode="after")
    def _labels_fit_task(self) -> PreprocessConfig:
        if self.task == "multilabel" and self.label_set not in ("all", "top_k", "list"):
            raise ValueError(
                f"preprocess.label_set '{self.label_set}' is a single-label benchmark; "
                "use task: singlelabel, or label_set one of all, top_k, list"
            )
        if self.task == "singlelabel" and self.label_set == "all":
            raise ValueError(
                "preprocess.label_set 'all' needs task: multilabel; for singlelabel choose "
                "one of r8, r52, top_k, list"
            )
        if self.label_set == "list" and not self.topics:
            raise ValueError(
                "preprocess.topics must list at least one topic when label_set is 'list'"
            )
        return self


class PretrainConfig(_Strict):
    """word2vec over the training split's own documents (see rnnops.stages.pretrain)."""

    dim: PositiveInt = 128
    window: PositiveInt = 5
    epochs: PositiveInt = 10
    negative: Annotated[int, Field(ge=1, le=50)] = 5
    skipgram: bool = True
    seed: int = 42


class ModelConfig(_Strict):
    kind: Literal["simple_rnn", "lstm", "gru"]
    bidirectional: bool = False
    # 0: no recurrent layer at all, the embeddings pooled by embedding_skip straight into
    # the classifier (a bag-of-embeddings model: the skip-only twin of a recurrent model).
    layers: Annotated[int, Field(ge=0)] = 1
    # Read each document from its last token to its first, so the state that `last`
    # pooling keeps is the one that has just read the title and the lead.
    read_backwards: bool = False
    # Read only each document's first lead_tokens tokens (the title and the lead; null:
    # all max_len). A last state that must carry the whole story forgets its start, and
    # the steps it skips cost nothing.
    lead_tokens: PositiveInt | None = None
    units: PositiveInt = 64
    embedding_dim: PositiveInt = 64
    # random: Keras' default; word2vec: start from the pretrain stage's vectors (learned
    # from the training split only) and fine-tune them. Needs embedding_dim = pretrain.dim.
    embedding_init: Literal["random", "word2vec"] = "random"
    # false: the embedding keeps its starting vectors (with word2vec, those learned from the
    # training split), so the network cannot memorise the training documents through
    # millions of per-word weights.
    embedding_trainable: bool = True
    mask_padding: bool = True
    spatial_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    recurrent_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # L2 penalty on the recurrent layers' input and recurrent weights and on the output
    # layer's (not the embedding's, which the skip and word2vec already shape); 0: none.
    l2: Annotated[float, Field(ge=0.0)] = 0.0
    # How the recurrent states become one vector: the last state, or max, mean or a
    # learned attention-weighted mean over every step's state (padding excluded).
    pooling: Literal["last", "max", "mean", "attention"] = "last"
    # Also feed poolings over time of the embeddings to the classifier (a bag-of-words
    # skip beside the recurrent path): any of max, mean and attention (a learned
    # weighted mean), e.g. [max, mean]; [] for none.
    embedding_skip: tuple[Literal["max", "mean", "attention"], ...] = ()
    # In training, drop the whole skip for this fraction of documents (the rest scaled up),
    # so that the recurrent path must classify those on its own instead of leaning on the
    # faster-learning bag of words.
    skip_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # The output layer's starting bias: the training split's label priors (as log-odds for
    # sigmoid outputs, log-probabilities for softmax), or zeros (every score starts at 0.5
    # for sigmoid outputs). From zeros, the first updates drive all 90 sigmoid scores down
    # together through the features, saturating a recurrent layer that then never learns.
    output_bias: Literal["prior", "zeros"] = "prior"
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    # constant, or cosine: a linear warm-up over the first warmup_epochs, then a cosine
    # decay to zero at the end of `epochs`.
    learning_rate_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    clipnorm: Annotated[float, Field(gt=0.0)] | None = 1.0
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 5
    early_stopping_patience: Annotated[int, Field(ge=0)] = 2
    # What early stopping watches (and which epoch's weights are kept): the validation
    # loss, or the validation score (micro-F1 at 0.5 for multi-label, accuracy for single-label).
    early_stopping_monitor: Literal["val_loss", "val_score"] = "val_loss"
    class_weights: bool = False
    # After early stopping has chosen the weights: this many more epochs on training +
    # validation documents together, at learning_rate x refit_learning_rate_scale, so
    # the model also learns from the documents held out to choose its epoch. 0: none.
    refit_epochs: Annotated[int, Field(ge=0)] = 0
    refit_learning_rate_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    seed: int = 42

    @model_validator(mode="after")
    def _has_features(self) -> ModelConfig:
        if self.layers == 0 and not self.embedding_skip:
            raise ValueError(
                "layers: 0 leaves no recurrent layer, so the classifier needs embedding_skip "
                "(e.g. [max, mean]); or set layers to 1 or more"
            )
        return self

    @field_validator("embedding_skip", mode="before")
    @classmethod
    def _skip_list(cls, value: Any) -> Any:
        if value is True:
            return ("max",)
        if value is False or value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("embedding_skip")
    @classmethod
    def _skip_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a pooling twice: {list(value)}; list each at most once")
        return value


class EnsembleConfig(_Strict):
    """A model made of trained models: the mean of their scores (no training of its own)."""

    members: list[str] = Field(min_length=2)

    @field_validator("members")
    @classmethod
    def _members_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a model twice: {value}")
        return value


class EvaluateConfig(_Strict):
    # Multi-label decision threshold: 'validation' tunes one threshold on the
    # validation split; a number uses that threshold as is.
    threshold: Literal["validation"] | Annotated[float, Field(gt=0.0, lt=1.0)] = "validation"
    # Guarantee at least one topic per document (the top-scoring one).
    at_least_one: bool = True


class TrackingConfig(_Strict):
    # null: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db
    uri: str | None = None
    experiment: str = Field(default="reuters-topics", min_length=1)


PROMOTION_METRICS = ("macro_f1", "micro_f1", "accuracy", "weighted_f1")


class PromotionConfig(_Strict):
    registered_model: str = Field(default="reuters-topics", min_length=1)
    metric: Literal["macro_f1", "micro_f1", "accuracy", "weighted_f1"] = "macro_f1"
    # The champion alias moves only when the candidate wins by at least this much.
    min_delta: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


# Powers of two up to serving's default batch_max_documents: padding at most doubles a call.
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


class ServingConfig(_Strict):
    """The online server (``rnnops serve``); CLI flags override these."""

    registered_model: str = Field(default="reuters-topics", min_length=1)
    alias: str = Field(default="champion", min_length=1)
    # Loopback by default: the server has no authentication (``/reload`` included).
    host: str = Field(default="127.0.0.1", min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # Larger request bodies get 413 before they are parsed.
    max_body_bytes: Annotated[int, Field(ge=64)] = 1_000_000
    # More documents in one request get 413; split the batch.
    max_documents: PositiveInt = 512
    # Concurrent requests share one model call of up to this many documents (a larger
    # request runs in slices of this many, others going between them); under load a call waits up to batch_max_wait_ms for more to
    # arrive. A request on an idle server never waits.
    batch_max_documents: Annotated[int, Field(ge=1, le=4096)] = 64
    batch_max_wait_ms: Annotated[float, Field(ge=0.0, le=1000.0)] = 2.0
    # The network is compiled (XLA) for these numbers of rows; a call pads up to the
    # nearest. Empty: not compiled (predict_on_batch).
    compiled_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: list(DEFAULT_BATCH_SIZES)
    )
    # On SIGTERM, requests already read are answered for up to this long, then cancelled.
    shutdown_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 30
    # Server processes on the one port, each with its own copy of the model; a /reload
    # reaches all of them (rnnops.apps.serving_workers).
    workers: Annotated[int, Field(ge=1, le=64)] = 1


class Params(_Strict):
    ingest: IngestConfig = IngestConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    pretrain: PretrainConfig = PretrainConfig()
    models: dict[str, ModelConfig] = Field(min_length=1)
    ensembles: dict[str, EnsembleConfig] = Field(default_factory=dict)
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    serving: ServingConfig = ServingConfig()

    @model_validator(mode="after")
    def _model_names(self) -> Params:
        for section, names in (("models", self.models), ("ensembles", self.ensembles)):
            for name in names:
                if not name.replace("_", "").replace("-", "").isalnum():
                    raise ValueError(
                        f"{section}.{name}: names may use letters, digits, '-' and '_' only"
                    )
        for name, model in self.models.items():
            if model.embedding_init == "word2vec" and model.embedding_dim != self.pretrain.dim:
                raise ValueError(
                    f"models.{name}.embedding_dim is {model.embedding_dim} but its word2vec "
                    f"vectors have pretrain.dim {self.pretrain.dim}: make them equal, or set "
                    "embedding_init: random"
                )
        for name, ensemble in self.ensembles.items():
            if name in self.models:
                raise ValueError(
                    f"ensembles.{name}: a model has the same name; ensembles and models share "
                    "metrics/ and reports/eval/, so rename one of them"
                )
            unknown = [m for m in ensemble.members if m not in self.models]
            if unknown:
                raise ValueError(
                    f"ensembles.{name}.members: {', '.join(unknown)} not under models: "
                    f"(defined: {', '.join(self.models)}); remove them from the ensemble "
                    "or define them"
                )
        return self

    @property
    def candidates(self) -> list[str]:
        """Everything evaluated and promotable: the trained models, then the ensembles."""
        return [*self.models, *self.ensembles]

    def kind(self, name: str) -> str:
        return "ensemble" if name in self.ensembles else self.models[name].kind


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"] if not str(part).startswith("function-"))
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif err["type"] == "literal_error" and "expected" in ctx:
            msg = f"got {err.get('input')!r}; allowed values: {ctx['expected']}"
        elif err["type"] == "value_error" and isinstance(err.get("input"), dict):
            # A check across a whole section: its message names the keys; echoing the
            # section itself would bury it.
            msg = msg.removeprefix("Value error, ")
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {key or '<root>'}: {msg}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def serving_config(base: ServingConfig, **overrides: Any) -> ServingConfig:
    """``base`` with the given (non-None) values replaced, validated like params.yaml."""
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServingConfig.model_validate({**base.model_dump(), **values})
    except ValidationError as exc:
        head, *lines = format_validation_error(exc, "serving options").splitlines()
        raise ConfigError(
            "\n".join([head] + [f"  serving.{line.strip()}" for line in lines])
        ) from None


def load_params(
    path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> Params:
    """Load and validate ``params.yaml``; raise :class:`ConfigError` naming the bad key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"parameter file {path} not found (run from the project root or pass --params)"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must hold a mapping of sections (ingest, preprocess, models, ...)"
        )
    return parse_params(apply_overrides(raw, overrides), str(path))
