"""The batch readers: one row per record, each with its own error (rnnops.apps.batch)."""

from __future__ import annotations

import pytest

from rnnops.apps.batch import run_batch_score
from rnnops.apps.batch_input import BatchInputError, read_documents, text_problem


def errors(path, **kwargs) -> list[str | None]:
    return read_documents(path, **kwargs)["error"].tolist()


def test_jsonl_every_line_is_a_record(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(
        b'{"text": "a"}\n\n{"text": "b", "text": "c"}\n{"text": "\\u0000x"}\r\n'
        b'{"text": "\\ud800"}\n{"text": "d"} {"text": "e"}\n{"text": "f"}'
    )
    assert errors(tmp_path / "in.jsonl") == [
        None,
        "line 2: blank line",
        "line 3: field 'text' appears more than once",
        "line 4: text holds control character U+0000 (NUL) (at character 1)",
        "line 5: text is not valid UTF-8",
        "line 6: not valid JSON",
        None,
    ]


def test_csv_modes_decide_whether_quoted_fields_span_lines(tmp_path):
    (tmp_path / "in.csv").write_text('id,text\n1,"a\nstory"\n2,x\n')
    assert read_documents(tmp_path / "in.csv")["text"].tolist() == ["a\nstory", "x"]
    assert errors(tmp_path / "in.csv", csv_records="lines") == [
        "line 2: unbalanced quote: a quoted field opens on this line and does not close on it",
        "line 3: 1 field; the header has 2",
        None,
    ]
    with pytest.raises(BatchInputError, match="csv_records must be one of"):
        read_documents(tmp_path / "in.csv", csv_records="rows")


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("in.csv", "text\nx\n".encode("utf-16"), "is UTF-16"),
        ("in.csv", b'"text\nx\n', "line 1: the header row is malformed: unbalanced quote"),
        ("in.csv", b"text,text\nx,y\n", "column 'text' appears more than once"),
        ("in.jsonl", b"not json\n[1]\n", "none of its 2 lines holds a JSON object"),
        ("in.parquet", b"PAR1 but not really", "is not a readable Parquet file"),
    ],
)
def test_files_that_cannot_be_read_at_all_are_refused(tmp_path, name, data, needle):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(BatchInputError, match=needle):
        read_documents(tmp_path / name)


def test_the_output_may_not_be_the_input(tmp_path):
    (tmp_path / "in.csv").write_text("text\nx\n")
    with pytest.raises(BatchInputError, match="is the input file"):
        run_batch_score(lambda t: None, tmp_path / "in.csv", tmp_path / "in.csv", None, None, "u")
    assert (tmp_path / "in.csv").read_text() == "text\nx\n"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fine text", None),
        ("tab\tand\nnewline", None),
        ("bell\x07", "text holds control character U+0007 (at character 5)"),
        ("\x9bc1", "text holds control character U+009B (at character 1)"),
        ("  ", "empty text"),
        (3, "text is a number, not a string"),
    ],
)
def test_text_problem(value, problem):
    assert text_problem(value) == problem
