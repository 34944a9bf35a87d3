"""Batch files with broken records (issue 19, item 3), and ``rnnops batch-score``'s bad input.

Each input record maps to exactly one output row, in order, with its own status: a broken
record never merges into the next one, is never dropped and never shifts the rows after
it. The properties break random records of generated CSV and JSON Lines files in the ways
files get broken (an unbalanced quote, a field too many or too few, bytes that are not
UTF-8, control characters, a cut-off line, junk) and score them with a fake model.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import BIN_DIR, project_env, run, tiny_params
from rnnops.apps.batch import run_batch_score
from rnnops.apps.cli import main
from rnnops.systems import tracking


def fake_predict(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "topics": [["earn"]] * len(texts),
            "scores": [[0.9]] * len(texts),
            "top_topic": ["earn"] * len(texts),
            "top_score": [0.9] * len(texts),
        }
    )


# Texts that need quoting now and then (a comma, a doubled quote); the CSV writer quotes them.
TEXT = st.text(st.sampled_from("abc xyz,.'\"é"), min_size=1, max_size=12).filter(str.strip)
BREAKAGES = (
    "open_quote",  # a quote opens the text field and never closes
    "inner_quote",  # a quote inside a field, before a letter
    "extra_field",
    "missing_field",
    "bad_utf8",
    "control",
    "cut",  # the line cut short, maybe to nothing
    "junk",
)


def break_line(line: bytes, how: str, at: float) -> bytes:
    """``line`` (no line break) broken as ``how``; ``at`` in [0, 1) picks a place."""
    place = int(at * (len(line) + 1))
    if how == "open_quote":
        head, _, tail = line.partition(b",")
        return head + b',"' + tail.replace(b'"', b"")
    if how == "inner_quote":
        letters = [i for i, c in enumerate(line) if chr(c).isalpha()]
        i = letters[int(at * len(letters))] if letters else 0
        return line[:i] + b'"' + line[i:] if letters else line + b",x,y"
    if how == "extra_field":
        return line + b",extra"
    if how == "missing_field":
        return line.replace(b",", b" ", 1) if b"," in line else line + b",a,b"
    if how == "bad_utf8":
        return line[:place] + b"\xff\xfe" + line[place:]
    if how == "control":
        return line[:place] + b"\x00\x1b" + line[place:]
    if how == "cut":
        return line[:place]
    return b"#!%& junk ;; line"


@st.composite
def broken_csv(draw) -> tuple[bytes, list[str], set[int]]:
    """A CSV of ``id,text[,lang]`` records, some broken; the ids and the broken rows."""
    texts = draw(st.lists(TEXT, min_size=1, max_size=12))
    ids = [f"id{i}x" for i in range(len(texts))]  # no id is the start of another
    third = draw(st.booleans())
    lines = []
    for record_id, text in zip(ids, texts, strict=True):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(
            [record_id, text, "en"] if third else [record_id, text]
        )
        lines.append(buffer.getvalue().encode())
    broken = set()
    for i in draw(st.sets(st.integers(0, len(lines) - 1))):
        how = draw(st.sampled_from(BREAKAGES))
        lines[i] = break_line(lines[i], how, draw(st.floats(0, 1, exclude_max=True)))
        broken.add(i)
        event(f"csv breakage: {how}")
    terminator = draw(st.sampled_from([b"\n", b"\r\n"]))
    header = b"id,text,lang" if third else b"id,text"
    return terminator.join([header, *lines]) + terminator, ids, broken


@st.composite
def broken_jsonl(draw) -> tuple[bytes, list[str], set[int]]:
    texts = draw(st.lists(TEXT, min_size=1, max_size=12))
    ids = [f"id{i}x" for i in range(len(texts))]  # no id is the start of another
    lines = [json.dumps({"id": i, "text": t}).encode() for i, t in zip(ids, texts, strict=True)]
    broken = set()
    for i in draw(st.sets(st.integers(0, len(lines) - 1), max_size=len(lines) - 1)):
        how = draw(st.sampled_from(BREAKAGES))
        lines[i] = break_line(lines[i], how, draw(st.floats(0, 1, exclude_max=True)))
        broken.add(i)
        event(f"jsonl breakage: {how}")
    return b"\n".join(lines) + b"\n", ids, broken


@pytest.fixture(scope="module")
def prop_dir():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def score(path: Path, out: Path, id_column: str = "id") -> pd.DataFrame:
    result = run_batch_score(
        fake_predict, path, out, "m", "1", "models:/m/1", id_column=id_column, progress=False
    )
    frame = pd.read_parquet(out)
    assert result.rows == len(frame)
    return frame


def assert_one_row_per_record(frame: pd.DataFrame, ids: list[str], broken: set[int]) -> None:
    assert frame["row"].tolist() == list(range(len(ids)))
    for i, record_id in enumerate(ids):
        row = frame.iloc[i]
        if i in broken:
            # its own row: never another record's id, and an error says why when it is one
            assert row["id"] == record_id or row["id"] not in ids, frame.to_string()
            assert row["status"] == "scored" or row["error"]
        else:
            assert (row["id"], row["status"]) == (record_id, "scored"), frame.to_string()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=broken_csv())
def test_broken_csv_records_keep_one_row_each_in_order(prop_dir, case):
    data, ids, broken = case
    (prop_dir / "in.csv").write_bytes(data)
    frame = score(prop_dir / "in.csv", prop_dir / "out.parquet")
    assert_one_row_per_record(frame, ids, broken)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=broken_jsonl())
def test_broken_jsonl_lines_keep_one_row_each_in_order(prop_dir, case):
    data, ids, broken = case
    (prop_dir / "in.jsonl").write_bytes(data)
    frame = score(prop_dir / "in.jsonl", prop_dir / "out.parquet")
    assert_one_row_per_record(frame, ids, broken)
    for i in broken:
        assert frame.iloc[i]["status"] == "error" or frame.iloc[i]["id"] == ids[i]


def test_an_unbalanced_quote_costs_its_own_row_not_the_ones_after_it(tmp_path):
    (tmp_path / "in.csv").write_bytes(
        b"id,text\n"
        b"a,oil prices rose\n"
        b'b,"wheat exports fell\n'  # never closed: would swallow every line below
        b"c,quarterly profit up\n"
        b'd,"a story, with a comma"\n'
        b'e,"a story\nover two lines"\n'
        b"f,gold\n"
    )
    frame = score(tmp_path / "in.csv", tmp_path / "out.parquet")
    assert frame["id"].fillna("?").tolist() == ["a", "?", "c", "d", "e", "f"]
    assert frame["status"].tolist() == ["scored", "error", "scored", "scored", "scored", "scored"]
    assert frame.loc[1, "error"].startswith("line 3: unbalanced quote")


# --------------------------------------------------------------------------- the command line


def cli_workspace(base: Path) -> Path:
    params = base / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return params


@pytest.fixture
def fake_registry(monkeypatch):
    """The registry and model loading replaced: the command line's wiring, without MLflow."""

    class Model:
        def predict(self, frame):
            return fake_predict(frame["text"].tolist())

    monkeypatch.setattr(tracking, "use_tracking_uri", lambda configured: "sqlite:///fake.db")
    monkeypatch.setattr(
        tracking,
        "resolve_model_version",
        lambda uri: {"name": "m", "version": "3", "run_id": "r", "uri": "models:/m/3"},
    )
    monkeypatch.setattr(tracking, "load_text_model", lambda uri: Model())


def test_batch_score_command_writes_one_row_per_record(tmp_path, capsys, fake_registry):
    params = cli_workspace(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"id": 1, "text": "oil"}\n{"id": 2, "text": \n')
    status = main(
        [
            "--params",
            str(params),
            "batch-score",
            str(tmp_path / "in.jsonl"),
            str(tmp_path / "out.csv"),
            "--id-column",
            "id",
            "--chunk-size",
            "1",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "1 of 2 rows scored, 1 with status 'error'" in captured.out
    assert "row 1: line 2: not valid JSON" in captured.err
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["status"].tolist() == ["scored", "error"]
    assert out["model_version"].tolist() == [3, 3]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.csv", "out.parquet"], "input file missing.csv not found"),
        (["in.txt", "out.parquet"], "unknown input format"),
        (["in.csv", "out.json"], "unknown output format"),
        (["in.csv", "in.csv"], "is the input file"),
        (["in.csv", "folder.parquet"], "is a directory"),
        (["in.csv", "out.csv", "--text-column", "body"], "has no column 'body'"),
        (["in.csv", "out.csv", "--id-column", "status"], "clashes with an output column"),
        (["in.csv", "out.csv", "--model-uri", "no/such/dir"], "no such model directory"),
        (["empty.csv", "out.csv"], "is empty"),
        (["utf16.csv", "out.csv"], "is UTF-16"),
        (["in.csv", "out.csv", "--chunk-size", "0"], "must be at least 1"),
        (["in.csv", "out.csv", "--chunk-size", "many"], "is not a whole number"),
        (["in.csv", "out.csv", "--csv-records", "rows"], "invalid choice"),
    ],
)
def test_bad_command_line_input_exits_2_and_writes_nothing(
    tmp_path, capsys, monkeypatch, fake_registry, args, needle
):
    params = cli_workspace(tmp_path)
    (tmp_path / "in.csv").write_text("text\noil\n")
    (tmp_path / "in.txt").write_text("oil\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "utf16.csv").write_bytes("text\noil\n".encode("utf-16"))
    (tmp_path / "folder.parquet").mkdir()
    monkeypatch.chdir(tmp_path)
    try:
        status = main(["--params", str(params), "batch-score", *args])
    except SystemExit as exc:  # argparse refuses the option itself
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert needle in captured.err, captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.parquet").exists()
    assert (tmp_path / "in.csv").read_text() == "text\noil\n"


def test_batch_score_command_help_and_a_missing_store(tmp_path):
    """The real process: --help documents it; a store that does not exist exits 2."""
    env = project_env(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'none.db'}")
    proc = run([str(BIN_DIR / "rnnops"), "batch-score", "--help"], tmp_path, env)
    for flag in ("--model-uri", "--text-column", "--id-column", "--chunk-size", "--csv-records"):
        assert flag in proc.stdout
    params = cli_workspace(tmp_path)
    (tmp_path / "in.csv").write_text("text\noil\n")
    proc = run(
        [str(BIN_DIR / "rnnops"), "--params", str(params), "batch-score", "in.csv", "out.csv"],
        tmp_path,
        env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "no MLflow store at" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.csv").exists()
