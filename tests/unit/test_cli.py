"""The ``rnnops`` command line: parsing, defaults from dvc.yaml, exit statuses and messages."""

import inspect
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rnnops.apps import app_commands, cli, commands
from rnnops.core.config import ConfigError
from rnnops.systems.store_check import StoreUnreachableError

ROOT = Path(__file__).resolve().parents[2]
RNNOPS = str(Path(sys.executable).parent / "rnnops")
STAGE_COMMANDS = [
    "check-params",
    "ingest",
    "preprocess",
    "pretrain",
    "train",
    "ensemble",
    "evaluate",
    "promote",
    "compare",
    "sweep",
    "reproduce",
    "serve",
    "batch-score",
    "doctor",
]


@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch):
    """main() installs a SIGTERM handler and sets TF_CPP_MIN_LOG_LEVEL: undo both."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def dvc_commands() -> dict[str, list[list[str]]]:
    """Each stage's command line in dvc.yaml (foreach stages once per key), without `rnnops`."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    found = {}
    for name, stage in stages.items():
        if "foreach" in stage:
            keys = params[stage["foreach"].strip("${}")]
            found[name] = [shlex.split(stage["do"]["cmd"].replace("${key}", k)) for k in keys]
        else:
            found[name] = [shlex.split(stage["cmd"])]
    return {name: [argv[1:] for argv in argvs] for name, argvs in found.items()}


def test_help_exits_0_and_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in STAGE_COMMANDS:
        assert f"  {command} " in out, command
    assert "--params" in out and "--verbose" in out


def test_the_installed_command_answers_help_and_usage_errors(tmp_path):
    ok = subprocess.run([RNNOPS, "-h"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and "batch-score" in ok.stdout, ok.stderr
    bad = subprocess.run(
        [RNNOPS, "train", "lstm", "--epochs", "3"], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode == 2
    assert "rnnops train: error: No such option: --epochs" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "rnnops: error: Missing command."),
        (["trian", "lstm"], "rnnops: error: No such command 'trian'."),
        (["--bogus", "check-params"], "rnnops: error: No such option: --bogus"),
        (["train"], "rnnops train: error: Missing argument 'MODEL'."),
        (["reproduce"], "rnnops reproduce: error: Missing option '--run-id'."),
        (["compare", "--no-such-flag"], "rnnops compare: error: No such option: --no-such-flag"),
        (["ensemble", "mean", "extra"], "rnnops ensemble: error: Got unexpected extra argument"),
        (["serve", "--port", "http"], "rnnops serve: error: Invalid value for '--port'"),
        (["sweep", "s.yaml", "--max-parallel"], "rnnops sweep: error: Option '--max-parallel'"),
        (["batch-score", "a.csv", "b.csv", "--chunk-size", "0"], "must be at least 1, got 0"),
        (["batch-score", "a.csv", "b.csv", "--chunk-size", "x"], "'x' is not a whole number"),
        (["batch-score", "a.csv", "b.csv", "--csv-records", "rows"], "invalid choice: 'rows'"),
        # Global options go before the command, as with argparse's subcommands.
        (["check-params", "--params", "p.yaml"], "No such option: --params"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err, captured.err
    assert "Usage: rnnops" in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == [], "a usage error must not run anything"


def test_compare_help_shows_the_paths_dvc_yaml_passes(capsys):
    assert cli.main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    [argv] = dvc_commands()["compare"]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert len(pairs) == 9
    for option, value in pairs.items():
        assert f"{option} " in text and f"[default: {value}]" in text, option


def test_every_stage_runs_with_the_paths_of_dvc_yaml_when_they_are_left_out():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stage, argvs in dvc_commands().items():
        for argv in argvs:
            given = cli.parse(argv)
            positional = [a for a in argv[1:2] if not a.startswith("-")]
            bare = cli.parse([argv[0], *positional])
            assert isinstance(given, cli.Call) and isinstance(bare, cli.Call), argv
            if positional:  # defaults that follow the model's name: filled in by the body
                name = positional[0]
                kind = "ensemble" if name in (params.get("ensembles") or {}) else "model"
                derived = commands.model_paths(name, kind)
                derived["out"] = derived["model_dir"]
                defaults = {k: derived[k] if v is None else v for k, v in bare.run.keywords.items()}
            else:
                defaults = bare.run.keywords
            assert defaults == given.run.keywords, stage


@pytest.mark.parametrize(
    "argv",
    [
        ["check-params"],
        ["ingest"],
        ["preprocess"],
        ["pretrain"],
        ["train", "lstm"],
        ["ensemble", "mean"],
        ["evaluate", "lstm"],
        ["promote"],
        ["compare", "--no-baseline", "--no-mlflow"],
        ["sweep", "s.yaml", "--no-promote", "--apply-best", "--deployment", "t/p"],
        ["reproduce", "--run-id", "abc", "--keep"],
        ["serve", "--host", "0.0.0.0", "--port", "1", "--access-log"],
        ["batch-score", "a.csv", "b.csv", "--csv-records", "lines", "--no-progress"],
        ["doctor", "--dry-run"],
    ],
)
def test_each_command_calls_its_body_with_arguments_it_takes(argv):
    call = cli.parse(["--params", "p.yaml", "-v", *argv])
    assert (call.command, call.params_file, call.verbose) == (argv[0], "p.yaml", True)
    name = "cmd_" + argv[0].replace("-", "_")
    body = getattr(commands, name, None) or getattr(app_commands, name)
    assert call.run.func is body
    inspect.signature(call.run.func).bind(None, **call.run.keywords)


def test_check_params_writes_the_marker_where_dvc_yaml_expects_it(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-params"]) == 0
    marker = tmp_path / "data" / "params_check.json"
    assert json.loads(marker.read_text()) == commands.PARAMS_CHECKED
    assert "data/params_check.json" in dvc_commands()["check_params"][0]


def test_a_bad_parameter_file_exits_2_with_the_restore_hint(tmp_path, monkeypatch, capsys):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["preprocess"]["val_fraction"] = 7
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-params"]) == 2
    err = capsys.readouterr().err
    assert "rnnops check-params: error: " in err and "preprocess.val_fraction" in err
    assert "git checkout -- params.yaml" in err
    assert not (tmp_path / "data").exists()


def test_a_missing_parameter_file_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--params", "elsewhere.yaml", "doctor"]) == 2
    err = capsys.readouterr().err
    assert "rnnops doctor: error: parameter file elsewhere.yaml not found" in err


def _raise(exc: BaseException):
    def body(params):
        raise exc

    return body


def _sigterm(params):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises before this ends


@pytest.mark.parametrize(
    "body, status, message",
    [
        (lambda params: None, 0, None),
        (lambda params: 3, 3, None),
        (_raise(ConfigError("models.x is wrong")), 2, "rnnops doctor: error: models.x is wrong"),
        (_raise(ValueError("bad shape")), 1, "rnnops doctor: error: ValueError: bad shape"),
        (_raise(StoreUnreachableError("no answer")), 1, "rnnops doctor: error: no answer\n"),
        (_raise(KeyboardInterrupt()), 130, "rnnops doctor: interrupted (Ctrl-C)"),
        (_sigterm, 143, "rnnops doctor: interrupted (received signal 15)"),
    ],
)
def test_what_a_command_returns_or_raises_becomes_its_exit_status(
    tmp_path, monkeypatch, capsys, body, status, message
):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli.run(cli.Call("doctor", "params.yaml", False, body)) == status
    err = capsys.readouterr().err
    assert (message in err) if message else err == "", err
