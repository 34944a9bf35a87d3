"""Own-table ingest (``ingest.source: table``) with malformed files (issue 19, item 2).

Every malformed file makes ``rnnops ingest`` exit 2 with a short message naming the file,
the line (or Parquet row) and the fix, and leaves the previous output as it was. Most cases
call the CLI's ``main`` in-process (the same code path, without a Python start-up each);
one test runs the real ``rnnops`` process.
"""

from __future__ import annotations

import gzip
import io
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BIN_DIR, project_env, run, tiny_params
from rnnops.apps.cli import main

GOOD = b"id,text,topics,split\na,oil prices rose,crude,train\nb,wheat fell,grain,test\n"
PREVIOUS = b"the previous ingest output"


def workspace(base: Path, table: str, data: bytes | None) -> tuple[Path, Path, Path]:
    """params.yaml pointing at ``table`` (written with ``data``) and a previous output."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / table
    if data is not None:
        path.write_bytes(data)
    params = tiny_params(
        {
            "ingest.source": "table",
            "ingest.table.path": str(path),
            "ingest.table.id_column": "id",
            "ingest.table.split_column": "split",
        }
    )
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = base / "raw" / "reuters.parquet"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(PREVIOUS)
    return base / "params.yaml", path, out


def ingest(params: Path, out: Path, capsys) -> tuple[int, str]:
    status = main(["--params", str(params), "ingest", "--out", str(out)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


LONG = "x" * 5000
CASES = {
    # name: (file name, bytes, where it is, a word of the fix)
    "latin-1": (
        "t.csv",
        "id,text,topics,split\na,caf\u00e9 prices,crude,train\n".encode("latin-1"),
        "line 2",
        "Re-save it as UTF-8",
    ),
    "utf-16 with a byte order mark": (
        "t.csv",
        GOOD.decode().encode("utf-16"),
        "line 1",
        "Re-save it as UTF-8",
    ),
    "utf-16 without a byte order mark": (
        "t.csv",
        GOOD.decode().encode("utf-16-le"),
        "line 1",
        "Re-save it as UTF-8",
    ),
    "unterminated quote": (
        "t.csv",
        GOOD + b'c,"oil up again,crude,train\nd,corn,grain,test\n',
        "line 4",
        "Quote a field",
    ),
    "quote that swallows a record and closes later": (
        "t.csv",
        GOOD + b'c,"oil up,crude,train\nd,corn,grain,test\ne,rice",grain,train\n',
        "line 4",
        "Quote a field",
    ),
    "text after a closing quote": (
        "t.csv",
        GOOD + b'c,"oil" up,crude,train\n',
        "line 4",
        "Quote a field",
    ),
    "too many fields": ("t.csv", GOOD + b"c,oil, up,crude,train\n", "line 4", "Quote a field"),
    "too few fields": ("t.csv", GOOD + b"c,oil up,train\n", "line 4", "Quote a field"),
    "empty file": ("t.csv", b"", "is empty", "header row"),
    "only blank lines": ("t.csv", b"\n\r\n\n", "is empty", "header row"),
    "header only": ("t.csv", b"id,text,topics,split\n", "line 1", "add one row"),
    "NUL in a text": ("t.csv", GOOD + b"c,oil\x00 up,crude,train\n", "line 4", "Remove it"),
    "escape character in a label": (
        "t.csv",
        GOOD + b"c,oil up,cru\x1bde,train\n",
        "line 4",
        "Remove it",
    ),
    "missing column": (
        "t.csv",
        b"id,body,topics,split\na,oil,crude,train\n",
        "line 1",
        "ingest.table",
    ),
    "column named twice": (
        "t.csv",
        b"id,text,text,topics,split\na,oil,x,crude,train\n",
        "line 1",
        "rename",
    ),
    "a PNG image": ("t.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "line 1", "UTF-8"),
    "a gzip file": ("t.csv", gzip.compress(GOOD), "line 1", "UTF-8"),
    "not Parquet at all": ("t.parquet", GOOD, "not a readable Parquet file", "Re-save it"),
    "Parquet with a list as text": (
        "t.parquet",
        parquet_bytes(
            pd.DataFrame(
                {
                    "id": ["a", "b"],
                    "text": [["oil"], ["wheat"]],
                    "topics": ["crude", "grain"],
                    "split": ["train", "test"],
                }
            )
        ),
        "row 1",
        "Fix the file",
    ),
    "Parquet with a control character": (
        "t.parquet",
        parquet_bytes(
            pd.DataFrame(
                {
                    "id": ["a", "b"],
                    "text": ["oil", "whe\x07at"],
                    "topics": ["crude", "grain"],
                    "split": ["train", "test"],
                }
            )
        ),
        "row 2",
        "Fix the file",
    ),
    "an empty text (the data contract)": (
        "t.csv",
        GOOD + b"c,,crude,train\n",
        "line 4",
        "empty_texts: drop",
    ),
    "a long ragged row is not echoed": (
        "t.csv",
        GOOD + f"c,{LONG},{LONG},crude,train\n".encode(),
        "line 4",
        "Quote a field",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_malformed_tables_exit_2_naming_file_and_line_and_write_nothing(case, tmp_path, capsys):
    name, data, where, fix = CASES[case]
    params, path, out = workspace(tmp_path, name, data)
    status, output = ingest(params, out, capsys)
    assert status == 2, output
    assert str(path) in output and where in output and fix in output, output
    assert "Traceback" not in output
    assert "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" not in output  # no echo
    assert len(output) < 1500, output
    assert out.read_bytes() == PREVIOUS  # the previous output is intact ...
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # ... and nothing beside


def test_a_good_table_still_ingests(tmp_path, capsys):
    data = GOOD + b'c,"multi, then\nline ""quoted"" story",crude;grain,train\n'
    params, _, out = workspace(tmp_path, "t.csv", data)
    status, output = ingest(params, out, capsys)
    assert status == 0, output
    frame = pd.read_parquet(out)
    assert frame["text"].tolist()[-1] == 'multi, then\nline "quoted" story'
    assert frame["topics"].map(list).tolist()[-1] == ["crude", "grain"]
    assert list(frame.columns) == ["doc_id", "split", "title", "text", "topics"]


def test_the_rnnops_process_exits_2_and_keeps_the_previous_output(tmp_path):
    """The real command line, as dvc.yaml runs it."""
    env = project_env(tmp_path)
    for number, data in enumerate(
        (GOOD + b'c,"unbalanced,crude,train\n', "text,topics\ncaf\u00e9,x\n".encode("cp1252"))
    ):
        params, path, out = workspace(tmp_path / str(number), "t.csv", data)
        proc = run(
            [str(BIN_DIR / "rnnops"), "--params", str(params), "ingest", "--out", str(out)],
            params.parent,
            env,
            check=False,
            timeout=120,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert re.search(rf"{re.escape(str(path))}, line \d+: ", output), output
        assert "Traceback" not in output, output
        assert out.read_bytes() == PREVIOUS


# --------------------------------------------------------------------------- properties


def table_with_damage() -> st.SearchStrategy[bytes]:
    """A valid table, then a few bytes inserted, replaced or cut at random places."""
    cell = st.text(st.sampled_from('ab ,"\n\x00\xe9'), max_size=6)
    row = st.tuples(
        cell, cell, st.sampled_from(["crude", "a;b", ""]), st.sampled_from(["train", "test", "x"])
    )

    @st.composite
    def build(draw) -> bytes:
        buffer = io.StringIO()
        import csv

        writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
        writer.writerow(["id", "text", "topics", "split"])
        writer.writerows(draw(st.lists(row, max_size=6)))
        data = bytearray(buffer.getvalue().encode(draw(st.sampled_from(["utf-8", "latin-1"]))))
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(data)))
            junk = draw(st.binary(max_size=3))
            cut = draw(st.integers(0, 2))
            data[at : at + cut] = junk
        return bytes(data)

    return build()


@pytest.fixture(scope="module")
def prop_dir():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.one_of(st.binary(max_size=200), table_with_damage()))
def test_random_bytes_as_a_table_exit_0_or_2_never_a_traceback(prop_dir, capsys, data):
    params, path, out = workspace(prop_dir, "t.csv", data)
    status, output = ingest(params, out, capsys)
    assert status in (0, 2), output
    assert "Traceback" not in output
    if status == 2:
        assert str(path) in output, output
        assert out.read_bytes() == PREVIOUS
    else:
        assert len(pd.read_parquet(out)) >= 2
