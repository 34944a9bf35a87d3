"""The bodies of the ``rnnops`` commands that are not pipeline stages: sweeps, reproduction,
serving, batch scoring and the doctor. Imported only when one of them runs, so a stage's
start-up never pays for them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rnnops.core.config import ConfigError, Params

log = logging.getLogger("rnnops")


def _import_flows(command: str) -> None:
    """Make ``flows`` importable; Prefect is imported only by the commands that call this."""
    import rnnops

    # flows/ sits beside src/ in the project (not in the installed package): the
    # current directory, else the checkout this package was installed from (editable).
    for candidate in (Path.cwd(), Path(rnnops.__file__).resolve().parents[2]):
        if (candidate / "flows" / f"{command}.py").exists():
            sys.path.insert(0, str(candidate))
            return
    raise ConfigError(f"flows/{command}.py not found: run `rnnops {command}` from the project root")


def cmd_study(
    params: Params, *, params_file: str, study: str, quick: bool, max_parallel: int | None
) -> int:
    _import_flows("study")
    from flows.study import main as study_main

    argv = [study, "--params", params_file, *(["--quick"] if quick else [])]
    argv += [] if max_parallel is None else ["--max-parallel", str(max_parallel)]
    return study_main(argv)


def cmd_sweep(
    params: Params,
    *,
    params_file: str,
    space: str,
    max_parallel: int | None,
    promote: bool,
    apply_best: bool,
    deployment: str | None,
    git_remote: str | None = None,
) -> int:
    _import_flows("sweep")
    from flows.sweep import main as sweep_main

    argv = [space, "--params", params_file]
    # Given only when set, so the sweep file's own max_parallel applies otherwise.
    argv += [] if max_parallel is None else ["--max-parallel", str(max_parallel)]
    argv += [] if promote else ["--no-promote"]
    argv += ["--apply-best"] if apply_best else []
    if deployment:
        argv += ["--deployment", deployment]
    argv += ["--git-remote", git_remote] if git_remote else []
    return sweep_main(argv)


def cmd_reproduce(params: Params, *, run_id: str, tolerance: float, keep: bool) -> int:
    from rnnops.apps.reproduce import reproduce_run
    from rnnops.systems import tracking
    from rnnops.systems.store_check import check_store

    # The run must already be in a store: never create an empty one to look in.
    check_store(tracking.resolve_tracking_uri(params.tracking.uri), must_exist=True)
    tracking.configure(params.tracking.uri, params.tracking.experiment)
    result = reproduce_run(run_id, tracking.project_root(), tolerance=tolerance, keep=keep)
    print(f"run {result.run_id} ({result.model}) at commit {result.commit[:10]}")
    print(f"  data hash: recorded {result.data_hash_recorded}, reproduced {result.data_hash_now}")
    for key, old in result.metrics_recorded.items():
        new = result.metrics_now.get(key)
        mark = "  " if key not in result.differences else "!="
        print(
            f"  {mark} {key:<16} recorded {old:.6f}  reproduced {new if new is None else f'{new:.6f}'}"
        )
    print("metrics match" if result.matches else "metrics DO NOT match")
    return 0 if result.matches else 3


def cmd_serve(
    params: Params,
    *,
    host: str | None,
    port: int | None,
    model_name: str | None,
    alias: str | None,
    max_body_bytes: int | None,
    max_documents: int | None,
    workers: int | None,
    access_log: bool,
) -> None:
    from rnnops.apps.serving import serve
    from rnnops.core.config import serving_config
    from rnnops.systems import tracking

    cfg = serving_config(
        params.serving,
        host=host,
        port=port,
        registered_model=model_name,
        alias=alias,
        max_body_bytes=max_body_bytes,
        max_documents=max_documents,
        workers=workers,
    )
    uri = tracking.use_tracking_uri(params.tracking.uri)
    log.info("MLflow registry at %s; serving models:/%s@%s", uri, cfg.registered_model, cfg.alias)
    serve(cfg, access_log=access_log)


def _check_batch_paths(input_path: str, output_path: str, model_uri: str) -> None:
    from rnnops.apps.batch import BatchInputError, check_paths

    check_paths(input_path, output_path)
    if not Path(input_path).is_file():
        raise BatchInputError(f"input file {input_path} not found")
    if ":/" not in model_uri and not Path(model_uri).exists():
        raise BatchInputError(
            f"--model-uri {model_uri}: no such model directory (give models:/NAME@ALIAS, "
            "models:/NAME/VERSION, runs:/RUN_ID/model or a model directory)"
        )


def cmd_batch_score(
    params: Params,
    *,
    input_path: str,
    output_path: str,
    model_uri: str | None,
    text_column: str,
    id_column: str | None,
    chunk_size: int,
    csv_records: str,
    progress: bool,
) -> int:
    from rnnops.apps.batch import (
        BatchInputError,
        check_csv_records,
        pyfunc_predict,
        run_batch_score,
    )
    from rnnops.systems import tracking

    model_uri = model_uri or f"models:/{params.serving.registered_model}@{params.serving.alias}"
    try:
        # Paths and options are checked before the registry is asked or a model loaded.
        check_csv_records(csv_records)
        _check_batch_paths(input_path, output_path, model_uri)
        uri = tracking.use_tracking_uri(params.tracking.uri)
        model = tracking.resolve_model_version(model_uri)
        log.info("batch-score: %s is %s in %s", model_uri, model["uri"], uri)
        result = run_batch_score(
            pyfunc_predict(tracking.load_text_model(model["uri"])),
            input_path,
            output_path,
            model_name=model["name"],
            model_version=model["version"],
            model_uri=model["uri"],
            text_column=text_column,
            id_column=id_column,
            chunk_size=chunk_size,
            progress=progress,
            csv_records=csv_records,
        )
    except (BatchInputError, tracking.ModelNotFoundError) as exc:
        print(f"rnnops batch-score: error: {exc}", file=sys.stderr)
        return 2
    for bad in result.bad_rows[:10]:
        print(f"  row {bad.row}: {bad.reason}", file=sys.stderr)
    if result.bad > 10:
        print(f"  ... and {result.bad - 10} more (status 'error' in the output)", file=sys.stderr)
    print(
        f"batch-score: {result.scored} of {result.rows} rows scored, {result.bad} with "
        f"status 'error', by {result.model_uri} in {result.seconds:.1f}s -> {result.output_path}"
    )
    return 0


def cmd_doctor(params: Params, *, dry_run: bool) -> None:
    from rnnops.systems import tracking

    uri = tracking.resolve_tracking_uri(params.tracking.uri)
    reaped = tracking.doctor(uri, dry_run=dry_run)
    verb = "would mark" if dry_run else "marked"
    for item in reaped:
        print(f"{verb} run {item['run_id']} ({item['name']}) KILLED: {item['reason']}")
    print(
        f"doctor: {len(reaped)} run(s) left RUNNING by a dead process at {uri}"
        + ("" if reaped else "; nothing to do")
    )
