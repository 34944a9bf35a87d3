"""``rnnops`` command line: one subcommand per pipeline stage (what dvc.yaml calls).

Every path option defaults to what dvc.yaml passes its stage, so ``rnnops compare`` alone
redoes the comparison of the pipeline's outputs. Parsing only builds a :class:`Call`;
:func:`main` loads the parameter file, runs the body from :mod:`rnnops.apps.commands` and
turns what it raises into an exit status.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from rnnops.apps import commands
from rnnops.apps.cli_options import (
    CSV_RECORDS,
    Command,
    Data,
    Evaluations,
    Group,
    Metrics,
    Models,
    Raw,
    csv_records_mode,
    dir_option,
    file_option,
    flag,
    option,
    positive_int,
)
from rnnops.apps.cli_runtime import Call, run, setup_logging, usage_error

try:  # typer >= 0.26 vendors click; its exception classes live only there
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException


def _app_command(name: str) -> Callable[..., int | None]:
    # Imported when such a command runs: the pipeline's stages never load its code.
    from rnnops.apps import app_commands

    return getattr(app_commands, name)


def _call(ctx: typer.Context, body: Callable[..., int | None], **extra) -> Call:
    """The parsed command: its options (``ctx.params``, named as ``body``'s parameters) bound
    to ``body``, which main() calls with the loaded parameter file."""
    options = ctx.find_root().params
    run = functools.partial(body, **ctx.params, **extra)
    return Call(ctx.info_name or "", options["params"], options["verbose"], run)


app = typer.Typer(
    name="rnnops",
    cls=Group,
    help="Recurrent text classifiers on Reuters: the stages of the DVC pipeline.",
    add_completion=False,
    # Plain help: descriptions hold brackets (e.g. {key: [values]}) that Rich would eat.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _command(name: str, short_help: str) -> Callable:
    return app.command(name, cls=Command, short_help=short_help)


@app.callback()
def _options(
    params: Annotated[str, file_option("parameter file", "--params")] = "params.yaml",
    verbose: Annotated[
        bool, flag("-v", "--verbose", help="debug logging; a traceback on unexpected errors")
    ] = False,
) -> None:
    """Recurrent text classifiers on Reuters: the stages of the DVC pipeline."""


@_command(
    "check-params", "validate every section of the parameter file (the pipeline's first stage)"
)
def _check_params(
    ctx: typer.Context,
    out: Annotated[str, file_option("marker file to write")] = "data/params_check.json",
) -> Call:
    """Validate the whole parameter file and write a marker file that every other stage
    depends on. DVC removes a stage's outputs before the stage's command runs, so a bad
    value must be caught here, before any stage with outputs starts."""
    params_file = ctx.find_root().params["params"]
    return _call(ctx, commands.cmd_check_params, params_file=params_file)


@_command("ingest", "read the corpus into one validated Parquet table")
def _ingest(
    ctx: typer.Context,
    out: Annotated[str, file_option("output Parquet file")] = "data/raw/reuters.parquet",
) -> Call:
    """Read the corpus named by ingest.source into a table (doc_id, split, title, text,
    topics)."""
    return _call(ctx, commands.cmd_ingest)


@_command("preprocess", "tokenize, build the vocabulary, encode splits")
def _preprocess(
    ctx: typer.Context,
    input_path: Annotated[str, file_option("ingested Parquet table", "--input")] = (
        "data/raw/reuters.parquet"
    ),
    out: Annotated[str, dir_option("output directory")] = "data/processed",
) -> Call:
    """Tokenize, build a train-only vocabulary, pad/truncate, carve a validation split,
    encode labels for the configured task."""
    return _call(ctx, commands.cmd_preprocess)


@_command("pretrain", "learn word2vec embeddings from the training split")
def _pretrain(
    ctx: typer.Context,
    data: Data = "data/processed",
    out: Annotated[str, dir_option("output directory")] = "data/pretrained",
) -> Call:
    """Learn word2vec vectors (params pretrain:) from the training documents of --data
    only; models with embedding_init: word2vec start from them."""
    return _call(ctx, commands.cmd_pretrain)


@_command("train", "train one model from params.yaml models:")
def _train(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="a key of models: in params.yaml")],
    data: Data = "data/processed",
    pretrained: Annotated[
        str, dir_option("the pretrain stage's output, for embedding_init: word2vec")
    ] = "data/pretrained",
    out: Annotated[str | None, dir_option("output directory", default="models/MODEL")] = None,
) -> Call:
    """Train the model MODEL as configured under models.MODEL."""
    return _call(ctx, commands.cmd_train)


@_command("ensemble", "combine trained models into one that averages their scores")
def _ensemble(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="a key of ensembles: in params.yaml")],
    models: Annotated[str, dir_option("directory of models/<model>/model.keras")] = "models",
    data: Annotated[str, dir_option("processed data directory (for lineage)")] = "data/processed",
    out: Annotated[str | None, dir_option("output directory", default="ensembles/NAME")] = None,
) -> Call:
    """Combine the members of ensembles.NAME (trained models under --models) into one
    Keras model whose scores are the mean of theirs; it is evaluated, compared and
    promoted like any model."""
    return _call(ctx, commands.cmd_ensemble)


@_command("evaluate", "score a trained model on the test split")
def _evaluate(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="a key of models: or ensembles: in params.yaml")
    ],
    model_dir: Annotated[
        str | None,
        dir_option(
            "directory holding model.keras",
            default="models/MODEL; ensembles/MODEL for an ensemble",
        ),
    ] = None,
    data: Data = "data/processed",
    metrics: Annotated[
        str | None, file_option("metrics JSON to write", default="metrics/MODEL.json")
    ] = (None),
    plots: Annotated[
        str | None, dir_option("plots directory to write", default="plots/MODEL")
    ] = None,
    report: Annotated[
        str | None, dir_option("report directory to write", default="reports/eval/MODEL")
    ] = None,
) -> Call:
    """Score MODEL on the held-out test split; write metrics and plots."""
    return _call(ctx, commands.cmd_evaluate)


@_command("promote", "register the best model; move champion only on evidence")
def _promote(
    ctx: typer.Context,
    metrics: Metrics = "metrics",
    evaluations: Evaluations = "reports/eval",
    data: Annotated[str, dir_option("processed data directory (to re-score the champion)")] = (
        "data/processed"
    ),
    raw: Raw = "data/raw/reuters.parquet",
    out: Annotated[str, file_option("decision JSON to write")] = "reports/promotion.json",
) -> Call:
    """Register this execution's best model (by promotion.metric on validation) and move the
    champion alias only if it beats the champion on the same validation data by min_delta;
    else it becomes challenger."""
    return _call(ctx, commands.cmd_promote)


@_command("compare", "compare the evaluated models: report (md, html) and figures")
def _compare(
    ctx: typer.Context,
    metrics: Metrics = "metrics",
    models: Models = "models",
    evaluations: Evaluations = "reports/eval",
    data: Data = "data/processed",
    raw: Raw = "data/raw/reuters.parquet",
    out_md: Annotated[str, file_option("markdown report to write")] = "reports/comparison.md",
    out_html: Annotated[str, file_option("HTML report to write")] = "reports/comparison.html",
    plots: Annotated[str, dir_option("figures directory to write")] = "plots/comparison",
    promotion: Annotated[
        str, file_option("the promote stage's decision (names the champion; skipped if absent)")
    ] = "reports/promotion.json",
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="the TF-IDF + linear SVM baseline")
    ] = True,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="log the report to the MLflow runs")
    ] = True,
) -> Call:
    """Write a comparison of every model in params.yaml models: a table (architecture,
    parameters, time, epochs, test metrics), learning curves, per-class F1, metrics by
    document length and the gap to a TF-IDF + linear SVM baseline; log the report to
    each model's MLflow run."""
    return _call(ctx, commands.cmd_compare)


@_command("sweep", "run a sweep of DVC experiments in parallel (Prefect); promote the best")
def _sweep(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="SPACE", help="YAML file with the sweep space")],
    max_parallel: Annotated[
        int | None, option("N", "points at once (default: the sweep file's max_parallel, else 2)")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="promote the best point")
    ] = True,
    apply_best: Annotated[bool, flag("--apply-best", help="dvc exp apply the best point")] = (
        False
    ),
    deployment: Annotated[
        str | None,
        option("NAME", "dispatch points as runs of this deployment, e.g. training/point"),
    ] = None,
    git_remote: Annotated[
        str | None,
        option("URL", "with --deployment: workers clone this git remote and push back"),
    ] = None,
) -> Call:
    """Run every point of SPACE (a YAML file: a grid {key: [values]} or a list of override
    mappings, optionally under 'space:') as an isolated DVC experiment, at most
    --max-parallel at once; the best point goes through the promotion gate. Run it from
    the project root (it imports flows/sweep.py)."""
    return _call(ctx, _app_command("cmd_sweep"), params_file=ctx.find_root().params["params"])


@_command("study", "run the RNN-vs-LSTM study (Prefect, DVC experiments); write its report")
def _study(
    ctx: typer.Context,
    study: Annotated[str, typer.Argument(metavar="STUDY", help="the study file")] = "study.yaml",
    quick: Annotated[bool, flag("--quick", help="the study file's quick form")] = False,
    max_parallel: Annotated[
        int | None, option("N", "points at once (default: the study file's max_parallel)")
    ] = None,
) -> Call:
    """Run every point of STUDY that has not finished on this commit as an isolated DVC
    experiment under one MLflow parent run, then write reports/study.md and .html from
    all of them. A rerun retrains nothing that finished; a failed point reruns alone.
    Run it from the project root (it imports flows/study.py)."""
    return _call(ctx, _app_command("cmd_study"), params_file=ctx.find_root().params["params"])


@_command("reproduce", "re-run a tracked model from its commit, data and params")
def _reproduce(
    ctx: typer.Context,
    run_id: Annotated[str, option("ID", "MLflow run id", show_default=False)],
    tolerance: Annotated[float, option("X", "absolute tolerance per metric")] = 1e-6,
    keep: Annotated[bool, flag("--keep", help="keep the temporary worktree output")] = False,
) -> Call:
    """Check the run's recorded commit out into a fresh git worktree, restore its data
    with DVC, re-train and re-evaluate with the recorded params, and report whether the
    test metrics match (exit 3 when they do not)."""
    return _call(ctx, _app_command("cmd_reproduce"))


@_command("serve", "answer HTTP requests with the champion's topics of raw text")
def _serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, option("HOST", "interface to listen on (default: serving.host)")
    ] = (None),
    port: Annotated[int | None, option("N", "port (default: serving.port)")] = None,
    model_name: Annotated[
        str | None, option("NAME", "registered model (default: serving.registered_model)")
    ] = None,
    alias: Annotated[str | None, option("NAME", "alias to serve (default: serving.alias)")] = None,
    max_body_bytes: Annotated[
        int | None, option("N", "larger bodies get 413 (default: serving.max_body_bytes)")
    ] = None,
    max_documents: Annotated[
        int | None,
        option("N", "more documents per request get 413 (default: serving.max_documents)"),
    ] = None,
    workers: Annotated[
        int | None, option("N", "server processes, one model copy each (default: serving.workers)")
    ] = None,
    access_log: Annotated[bool, flag("--access-log", help="log every request")] = False,
) -> Call:
    """Serve models:/<serving.registered_model>@<serving.alias> over HTTP: POST /predict
    with {"text": "..."} or {"text": [...]}, GET /health, POST /reload (load the version
    the alias points at now, in every worker; the current one keeps serving if it fails).
    Flags override the serving: section of params.yaml."""
    return _call(ctx, _app_command("cmd_serve"))


@_command("batch-score", "score a file of documents with a registered model")
def _batch_score(
    ctx: typer.Context,
    input_path: Annotated[
        str, typer.Argument(metavar="INPUT", help="documents to score: .csv, .parquet or .jsonl")
    ],
    output_path: Annotated[
        str, typer.Argument(metavar="OUTPUT", help="scores to write (atomically): .parquet or .csv")
    ],
    model_uri: Annotated[
        str | None,
        option("URI", "model to score with (default: models:/NAME@ALIAS of the serving: section)"),
    ] = None,
    text_column: Annotated[str, option("NAME", "column holding the text")] = "text",
    id_column: Annotated[
        str | None, option("NAME", "column copied to the output to identify each row")
    ] = None,
    chunk_size: Annotated[int, option("N", "documents scored at once", parser=positive_int)] = 1000,
    csv_records: Annotated[
        str,
        option(
            "[" + "|".join(CSV_RECORDS) + "]",
            "how CSV records are delimited: auto (quoted fields may span lines unless that "
            "would swallow whole records), lines (one record a line), quoted (quoted fields "
            "span lines as written)",
            parser=csv_records_mode,
        ),
    ] = "auto",
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="a progress bar on stderr")
    ] = True,
) -> Call:
    """Score INPUT (.csv, .parquet, .jsonl with a text column) with one pinned version of
    --model-uri and write OUTPUT (.parquet, or .csv with lists joined by ';'): one row
    per input record, in order, with its status ('scored' or 'error') and reason. A
    malformed record is an error row of its own; it never merges into the next. The same
    core as flows/batch_score.py, without Prefect. Exit 2: the file or an option cannot
    be used at all (nothing is written)."""
    return _call(ctx, _app_command("cmd_batch_score"))


@_command("doctor", "mark KILLED the MLflow runs left RUNNING by a dead process")
def _doctor(
    ctx: typer.Context,
    dry_run: Annotated[bool, flag("--dry-run", help="list them, change nothing")] = False,
) -> Call:
    """Find MLflow runs still RUNNING whose process on this host no longer exists (killed
    with SIGKILL, or the machine went down) and mark them KILLED. Runs of other hosts
    and of live processes are left alone. The training flow does the same before it runs
    any stage."""
    return _call(ctx, _app_command("cmd_doctor"))


def parse(argv: Sequence[str]) -> Call | int:
    """The command line as a :class:`Call`, or the exit status when there is nothing to run
    (``--help``: 0; a usage error, reported on stderr: 2)."""
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False: errors come back here instead of ending the process.
        result = command.main(args=list(argv), prog_name="rnnops", standalone_mode=False)
    except ClickException as exc:
        return usage_error(exc)
    return result if isinstance(result, Call) else int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    call = parse(sys.argv[1:] if argv is None else argv)
    if not isinstance(call, Call):
        return call
    setup_logging(call.verbose)
    return run(call)


if __name__ == "__main__":
    sys.exit(main())
