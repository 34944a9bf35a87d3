"""The bodies of the ``rnnops`` commands: validated params and typed arguments in, work done.

:mod:`rnnops.apps.cli` parses the command line and calls these. Every import that costs
start-up time (TensorFlow, MLflow, pandas) happens inside the command that needs it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rnnops.core.config import ConfigError, Params
from rnnops.core.contract import KIND_TAG, MODEL_TAG, STAGE_TAG

log = logging.getLogger("rnnops")

# What the check_params stage writes when every section is valid. Always the same bytes:
# the stages after it depend on this file, and a constant hash reruns none of them.
PARAMS_CHECKED = {"params": "valid"}


def cmd_check_params(params: Params, *, params_file: str, out: str) -> None:
    from rnnops.core.io import write_json

    # main() has already loaded and validated every section before calling this.
    write_json(out, PARAMS_CHECKED)
    log.info("check-params: %s is valid -> %s", params_file, out)


def cmd_ingest(params: Params, *, out: str) -> None:
    from rnnops.stages.ingest import run_ingest

    result = run_ingest(params.ingest, out)
    log.info(
        "ingest: %d documents (%d train, %d test), %d topics, %d empty dropped -> %s",
        result.documents,
        result.train,
        result.test,
        result.topics,
        result.dropped_empty,
        out,
    )


def cmd_preprocess(params: Params, *, input_path: str, out: str) -> None:
    from rnnops.stages.preprocess import run_preprocess

    result = run_preprocess(params.preprocess, input_path, out)
    log.info(
        "preprocess: %s documents, %d labels, vocabulary %d -> %s",
        result.splits,
        result.labels,
        result.vocab_size,
        out,
    )


def cmd_pretrain(params: Params, *, data: str, out: str) -> None:
    from rnnops.stages.pretrain import run_pretrain

    summary = run_pretrain(params.pretrain, data, out)
    log.info(
        "pretrain: word2vec, %d dimensions, %d of %d vocabulary ids from %d training "
        "documents in %.1fs -> %s",
        summary.dim,
        summary.covered_tokens,
        summary.vocab_size,
        summary.training_documents,
        summary.seconds,
        out,
    )


def _candidate_kind(params: Params, name: str) -> str:
    """The kind of a model or ensemble; refuse names params.yaml does not define."""
    if name not in params.models and name not in params.ensembles:
        raise ConfigError(
            f"{name!r} is defined neither under models: nor under ensembles: in params.yaml "
            f"(defined: {', '.join(params.candidates)})"
        )
    return params.kind(name)


def _model_cfg(params: Params, name: str):
    if name not in params.models:
        raise ConfigError(
            f"model {name!r} is not defined under models: in params.yaml "
            f"(defined: {', '.join(params.models)})"
        )
    return params.models[name]


def model_paths(name: str, kind: str) -> dict[str, str]:
    """Where dvc.yaml keeps a model's or ensemble's files: the paths its options default to."""
    return {
        "model_dir": f"{'ensembles' if kind == 'ensemble' else 'models'}/{name}",
        "metrics": f"metrics/{name}.json",
        "plots": f"plots/{name}",
        "report": f"reports/eval/{name}",
    }


def _start_tracking(params: Params, data_dir: str) -> tuple[object, dict[str, str], str | None]:
    from rnnops.systems import tracking

    uri = tracking.configure(params.tracking.uri, params.tracking.experiment)
    log.info("MLflow tracking at %s, experiment %s", uri, params.tracking.experiment)
    data_hash = tracking.dvc_locked_hash("preprocess", Path(data_dir).as_posix())
    return tracking, tracking.lineage_tags(data_hash), data_hash


def cmd_train(
    params: Params, *, model: str, data: str, pretrained: str | None, out: str | None
) -> None:
    from rnnops.core.io import remove_on_failure
    from rnnops.stages.pretrain import EMBEDDINGS
    from rnnops.stages.train import TRAIN_OUTPUTS, run_train

    cfg = _model_cfg(params, model)
    out = out or model_paths(model, cfg.kind)["model_dir"]
    if cfg.embedding_init == "word2vec" and (
        pretrained is None or not (Path(pretrained) / EMBEDDINGS).exists()
    ):
        # Refused before an MLflow run starts: a usage error is not a failed training.
        where = "no --pretrained" if pretrained is None else f"no {Path(pretrained) / EMBEDDINGS}"
        raise ConfigError(
            f"models.{model}.embedding_init is word2vec and there is {where}: pass "
            "--pretrained data/pretrained (the pretrain stage's output; dvc repro pretrain)"
        )
    tracking, tags, data_hash = _start_tracking(params, data)
    tags.update({MODEL_TAG: model, KIND_TAG: cfg.kind, STAGE_TAG: "train"})
    data_dir, out_dir = Path(data), Path(out)
    with tracking.stage_run(
        run_name=model, tags=tags, execution=tracking.execution_key(f"train@{model}")
    ) as run:
        pretrain = (
            params.pretrain.model_dump(mode="json") if cfg.embedding_init == "word2vec" else None
        )
        tracking.record_training_inputs(
            model, cfg.model_dump(mode="json"), pretrain, data_dir, data_hash
        )
        with remove_on_failure(*(out_dir / item for item in TRAIN_OUTPUTS)):
            summary = run_train(
                model,
                cfg,
                data_dir,
                out_dir,
                callbacks=[tracking.epoch_logger()],
                run_id=run.info.run_id,
                pretrained_dir=pretrained,
            )
            tracking.record_training_outputs(summary, out_dir, data_dir)
    log.info(
        "train@%s: %d epochs%s in %.1fs (best epoch %d, val_loss %.4f, %d parameters) -> %s",
        model,
        summary.epochs_run,
        f" + {summary.refit_epochs} refit" if summary.refit_epochs else "",
        summary.train_seconds,
        summary.best_epoch,
        summary.best_val_loss,
        summary.trainable_params,
        out,
    )


def cmd_ensemble(params: Params, *, name: str, models: str, data: str, out: str | None) -> None:
    from rnnops.core.io import remove_on_failure
    from rnnops.core.stage_files import VAL_SCORES
    from rnnops.stages.ensemble import run_ensemble

    if name not in params.ensembles:
        raise ConfigError(
            f"ensemble {name!r} is not defined under ensembles: in params.yaml "
            f"(defined: {', '.join(params.ensembles) or 'none'})"
        )
    out = out or model_paths(name, "ensemble")["model_dir"]
    members = params.ensembles[name].members
    tracking, tags, _ = _start_tracking(params, data)
    tags.update({MODEL_TAG: name, KIND_TAG: "ensemble", STAGE_TAG: "ensemble"})
    out_dir = Path(out)
    with tracking.stage_run(
        run_name=name, tags=tags, execution=tracking.execution_key(f"ensemble@{name}")
    ) as run:
        member_cfgs = {m: params.models[m].model_dump(mode="json") for m in members}
        tracking.record_ensemble_inputs(name, members, member_cfgs, Path(data))
        with remove_on_failure(
            out_dir / "model.keras", out_dir / "train.json", out_dir / VAL_SCORES
        ):
            summary = run_ensemble(name, members, models, out_dir, run_id=run.info.run_id)
            tracking.record_ensemble_outputs(summary, out_dir)
    log.info(
        "ensemble@%s: mean of %s (%d parameters) -> %s",
        name,
        ", ".join(members),
        summary.trainable_params,
        out,
    )


def cmd_evaluate(
    params: Params,
    *,
    model: str,
    model_dir: str | None,
    data: str,
    metrics: str | None,
    plots: str | None,
    report: str | None,
) -> None:
    from rnnops.core.io import read_json, remove_on_failure, write_json
    from rnnops.stages.evaluate import METRIC_KEYS, comparison_table, run_evaluate

    kind = _candidate_kind(params, model)
    default = model_paths(model, kind)
    metrics, plots = metrics or default["metrics"], plots or default["plots"]
    model_path, data_dir = Path(model_dir or default["model_dir"]), Path(data)
    report_dir = Path(report or default["report"])
    train_json = model_path / "train.json"
    train_info = read_json(train_json) if train_json.exists() else {}
    tracking, tags, data_hash = _start_tracking(params, data)
    tags.update(
        {
            MODEL_TAG: model,
            KIND_TAG: kind,
            "rnnops.evaluate.threshold_rule": str(params.evaluate.threshold),
            "rnnops.evaluate.at_least_one": str(params.evaluate.at_least_one).lower(),
        }
    )
    with (
        tracking.stage_run(
            run_id=train_info.get("mlflow_run_id"),
            run_name=model,
            tags=tags,
            execution=tracking.execution_key(f"evaluate@{model}"),
        ) as run,
        remove_on_failure(metrics, plots, report_dir),
    ):
        result = run_evaluate(
            model, params.evaluate, model_path, data_dir, metrics, plots, report_dir
        )
        paths = {
            "model_dir": model_path,
            "data_dir": data_dir,
            "metrics": Path(metrics),
            "plots": Path(plots),
            "report": report_dir,
        }
        model_uri = tracking.record_evaluation(model, result, METRIC_KEYS, paths, data_hash)
        ids = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}
        write_json(
            report_dir / "mlflow.json", {**ids, "model_uri": model_uri, "data_hash": data_hash}
        )
    log.info(
        "evaluate@%s: accuracy %.4f, micro-F1 %.4f, macro-F1 %.4f -> %s",
        model,
        *(result[key] for key in ("accuracy", "micro_f1", "macro_f1")),
        metrics,
    )
    print(comparison_table(Path(metrics).parent))


def cmd_promote(
    params: Params, *, metrics: str, evaluations: str, data: str, raw: str, out: str
) -> None:
    from rnnops.stages.promote import promotion_deferred, record_candidate, run_promote
    from rnnops.systems import tracking

    if promotion_deferred():
        record = record_candidate(
            params.candidates, params.promotion, Path(metrics), Path(evaluations), Path(out)
        )
        print(
            f"promotion deferred (sweep point): candidate {record['candidate']} "
            f"{record['metric']} {record['candidate_score']:.4f}"
        )
        return
    uri = tracking.configure(params.tracking.uri, params.tracking.experiment)
    log.info("MLflow registry at %s, model %s", uri, params.promotion.registered_model)
    decision = run_promote(
        params.candidates,
        params.promotion,
        Path(metrics),
        Path(evaluations),
        Path(data),
        Path(raw),
        Path(out),
    )
    print(
        f"{decision.registered_model} v{decision.candidate_version} ({decision.candidate}) -> "
        f"{decision.decision}: {decision.reason}"
    )


def cmd_compare(
    params: Params,
    *,
    metrics: str,
    models: str,
    evaluations: str,
    data: str,
    raw: str,
    out_md: str,
    out_html: str,
    plots: str,
    promotion: str | None,
    baseline: bool,
    mlflow: bool,
) -> None:
    from rnnops.core.ablation import find_twins
    from rnnops.core.io import read_json
    from rnnops.stages.compare import run_compare

    names = params.candidates
    result = run_compare(
        names,
        {n: params.kind(n) for n in names},
        metrics,
        models,
        evaluations,
        data,
        raw,
        out_md,
        out_html,
        plots,
        baseline=baseline,
        twins=find_twins(params.models),
        model_configs=params.models,
        promotion_path=promotion,
    )
    print(result.summary.to_string(index=False))
    if not mlflow:
        return
    from rnnops.systems import tracking

    run_ids = [
        read_json(path)["run_id"]
        for n in names
        if (path := Path(evaluations) / n / "mlflow.json").exists()
    ]
    if run_ids:
        tracking.configure(params.tracking.uri, params.tracking.experiment)
        logged = tracking.log_files_to_runs(run_ids, [out_md, out_html, plots], "comparison")
        log.info("compare: report logged to MLflow runs %s", ", ".join(logged))
