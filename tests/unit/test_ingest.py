from pathlib import Path

import nltk
import pandas as pd
import pytest

from rnnops.core.config import IngestConfig, TableSource
from rnnops.core.csv_records import csv_records
from rnnops.stages.corpus import CorpusNotFoundError, CorpusValidationError
from rnnops.stages.ingest import run_ingest, validate_corpus
from rnnops.stages.ingest_reuters import decode_document, parse_cats, read_nltk_reuters, split_title
from rnnops.stages.ingest_table import decode_table, read_table


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_split_title_takes_first_line():
    assert split_title("WHEAT UP\n  prices rose\n  sharply ") == ("WHEAT UP", "prices rose sharply")


def test_table_source_parses_delimited_labels_and_split(tmp_path):
    path = write_csv(
        tmp_path / "docs.csv",
        [
            {"id": "a", "body": "oil up", "labels": "crude; nat-gas", "part": "train"},
            {"id": "b", "body": "wheat", "labels": "grain", "part": "TEST"},
        ],
    )
    cfg = TableSource(
        path=str(path),
        id_column="id",
        text_column="body",
        label_column="labels",
        split_column="part",
    )
    frame = read_table(cfg)
    assert frame["topics"].tolist() == [["crude", "nat-gas"], ["grain"]]
    assert frame["split"].tolist() == ["train", "test"]


def test_table_source_without_split_column_is_seeded(tmp_path):
    rows = [{"text": f"doc {i}", "topics": "x"} for i in range(200)]
    path = write_csv(tmp_path / "docs.csv", rows)
    a = read_table(TableSource(path=str(path), seed=1))
    b = read_table(TableSource(path=str(path), seed=1))
    assert a["split"].tolist() == b["split"].tolist()
    assert 0.1 < (a["split"] == "test").mean() < 0.3


def test_table_parquet_with_list_labels(tmp_path):
    path = tmp_path / "docs.parquet"
    pd.DataFrame(
        {"text": ["a b", "c d"], "topics": [["x", "y"], ["z"]], "split": ["train", "test"]}
    ).to_parquet(path)
    frame = read_table(TableSource(path=str(path), split_column="split"))
    assert frame["topics"].tolist() == [["x", "y"], ["z"]]


def test_missing_column_names_the_setting(tmp_path):
    path = write_csv(tmp_path / "docs.csv", [{"body": "x", "topics": "a"}])
    with pytest.raises(CorpusValidationError, match=r"line 1: missing column\(s\) 'text'"):
        read_table(TableSource(path=str(path)))


def test_unsupported_suffix(tmp_path):
    (tmp_path / "docs.txt").write_text("x")
    with pytest.raises(CorpusValidationError, match=r"\.csv or \.parquet"):
        read_table(TableSource(path=str(tmp_path / "docs.txt")))


def frame(**changes):
    base = {
        "doc_id": ["a", "b", "c"],
        "split": ["train", "train", "test"],
        "title": ["", "", ""],
        "text": ["x y", "z", "w"],
        "topics": [["t"], ["u"], ["t"]],
    }
    base.update(changes)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"text": ["x", "  ", "w"]}, "1 document(s) with empty text: b"),
        ({"doc_id": ["a", "a", "c"]}, "1 duplicate doc_id(s): a"),
        ({"split": ["train", None, "test"]}, "missing or unknown split"),
        ({"topics": [["t"], [], ["t"]]}, "1 document(s) without labels: b"),
        ({"split": ["train", "train", "train"]}, "no documents in the test split"),
    ],
)
def test_validation_fails_loudly(changes, needle):
    with pytest.raises(CorpusValidationError) as info:
        validate_corpus(frame(**changes), "docs.csv")
    assert needle in str(info.value)


def test_empty_texts_can_be_dropped():
    out, dropped = validate_corpus(frame(text=["x", "", "w"]), "docs.csv", empty_texts="drop")
    assert dropped == ["b"] and out["doc_id"].tolist() == ["a", "c"]


def test_failed_ingest_writes_nothing(tmp_path):
    path = write_csv(tmp_path / "docs.csv", [{"text": "", "topics": "a", "split": "train"}])
    cfg = IngestConfig(source="table", table=TableSource(path=str(path), split_column="split"))
    out = tmp_path / "raw" / "reuters.parquet"
    with pytest.raises(CorpusValidationError):
        run_ingest(cfg, out)
    assert not out.exists()
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_nltk_reader_uses_the_nltk_layout(tiny_nltk_data, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tiny_nltk_data)])
    nltk.corpus.reuters._unload() if hasattr(nltk.corpus.reuters, "_unload") else None
    frame = read_nltk_reuters()
    assert len(frame) == 66
    assert set(frame["split"]) == {"train", "test"}
    assert frame["title"].str.isupper().all()


def test_missing_corpus_explains_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(nltk, "download", lambda *a, **k: False)  # no network here
    from nltk.corpus import reuters

    if hasattr(reuters, "_unload"):
        reuters._unload()
    with pytest.raises(CorpusNotFoundError) as info:
        read_nltk_reuters()
    assert "NLTK_DATA" in str(info.value) and "nltk.downloader" in str(info.value)


def test_cats_parsing_skips_blank_lines_and_merges_repeated_ids():
    data = b"training/1 grain wheat\r\n\ntest/2 crude\ntraining/1 corn\n"
    got = parse_cats(data, "cats.txt", {"training/1", "test/2"})
    assert got == {"training/1": ["corn", "grain", "wheat"], "test/2": ["crude"]}


def test_cats_parsing_reports_every_bad_line():
    data = b"training/1 grain\ntraining/2\ntest/9 crude\ntest/3 gr\xe4in\n"
    with pytest.raises(CorpusValidationError) as info:
        parse_cats(data, "cats.txt", {"training/1", "training/2", "test/3"})
    message = str(info.value)
    assert "cats.txt, line 2: 'training/2' has no topics" in message
    assert "cats.txt, line 3: 'test/9' is not a file of the corpus" in message
    assert "cats.txt, line 4: byte 0xE4 is not ASCII" in message


def test_documents_decode_in_the_corpus_encoding_and_refuse_control_bytes():
    assert decode_document(b"HEAD\n  caf\xe9 \xfcber\n", "d", "ISO-8859-2") == (
        "HEAD\n  caf\u00e9 \u00fcber\n"
    )
    with pytest.raises(CorpusValidationError, match=r"^d, line 3: byte 0x00 "):
        decode_document(b"HEAD\n  text\n\x00\x01", "d", "ISO-8859-2")
    with pytest.raises(CorpusValidationError, match=r"^d, line 1: .*\(utf-8\); .* encoding\. "):
        decode_document(b"caf\xff", "d", "utf-8")


# --------------------------------------------------------------------------- own tables: the reader


def records(text: str, mode: str = "auto") -> list[tuple[int, tuple | None, str | None]]:
    header, found = csv_records(text, mode)
    assert header is not None and header.problem is None
    return [(r.line, r.fields, r.problem and r.problem.split(":")[0]) for r in found]


def test_csv_records_keep_quoted_line_breaks_and_count_physical_lines():
    text = 'id,text\r\n1,"two, then\r\nlines ""quoted"""\r\n\r\n2,x\r\n'
    assert records(text) == [
        (2, ("1", 'two, then\r\nlines "quoted"'), None),
        (4, (), None),
        (5, ("2", "x"), None),
    ]
    # a second line that reads as a record itself is a text only where quoted fields are
    # trusted, or where another record spans lines beyond doubt
    doubtful = 'id,text\n1,"two\nlines, quoted"\n'
    assert records(doubtful)[0] == (2, None, "unbalanced quote")
    assert records(doubtful, "quoted") == [(2, ("1", "two\nlines, quoted"), None)]


def test_an_unbalanced_quote_costs_its_line_and_the_next_lines_are_read_again():
    text = 'id,text\n1,"open\n2,b\n3,"c, d"\n4,"never\n'
    assert records(text) == [
        (2, None, "unbalanced quote"),
        (3, ("2", "b"), None),
        (4, ("3", "c, d"), None),
        (5, None, "unbalanced quote"),
    ]


def test_stray_quotes_that_enclose_whole_records_do_not_merge_them():
    # line 2 opens a field, line 5 closes one; lines 3-4 are records of their own
    text = 'id,text\n1,"a\n2,b\n3,c\n4,d"\n'
    assert [line for line, _, problem in records(text) if problem] == [2]
    assert [f for _, f, _ in records(text)][1:] == [("2", "b"), ("3", "c"), ("4", 'd"')]
    # neighbouring lines, where nothing else in the file spans lines
    assert records('id,text\n1,"a\n2,b"\n3,c\n')[0] == (2, None, "unbalanced quote")
    # ... but beside a story that spans lines beyond doubt, a two-line text is a text
    story = 'id,text\n1,"a\n2,b"\n3,"one\nstory"\n'
    assert [f for _, f, _ in records(story)] == [("1", "a\n2,b"), ("3", "one\nstory")]
    assert [f for _, f, _ in records(story, "quoted")] == [("1", "a\n2,b"), ("3", "one\nstory")]


def test_csv_records_modes_and_record_problems():
    assert records('id,text\n1,"a\nb"\n', "lines") == [
        (2, None, "unbalanced quote"),
        (3, ('b"',), "1 field; the header has 2"),
    ]
    assert records('id,text\n1,"a"b\n2,x,y\n3\n') == [
        (
            2,
            None,
            "text follows a closing quote (a field with a quote in it must be quoted, its quotes doubled",
        ),
        (3, ("2", "x", "y"), "3 fields; the header has 2"),
        (4, ("3",), "1 field; the header has 2"),
    ]
    header, found = csv_records('id,text\n1,"' + "x\n" * 30, max_record_lines=10)
    assert "still open 10 lines later" in found[0].problem
    assert csv_records("") == (None, []) and csv_records("\n\n") == (None, [])
    header, found = csv_records('"id,text\n1,a\n')
    assert header.problem.startswith("unbalanced quote") and found == []


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("caf\u00e9\n".encode("cp1252"), "t.csv, line 1: byte 0xE9 is not UTF-8"),
        ("a\nb\n".encode("utf-16"), "t.csv, line 1: the file is UTF-16"),
        ("a\nbc\n".encode("utf-16-le"), "are NUL: the file is UTF-16"),
        (b"a\nb\x1bc\n", "t.csv, line 2: control character U+001B (ESC)"),
        (b"a\x00\n" + b"b" * 40, "t.csv, line 1: control character U+0000 (NUL)"),
        ("a\n\u0085\n".encode(), "line 2: control character U+0085"),
    ],
)
def test_decode_table_names_file_line_and_fix(data, needle):
    with pytest.raises(CorpusValidationError) as info:
        decode_table(data, Path("t.csv"))
    assert needle in str(info.value) and "nothing was written" in str(info.value)


def test_decode_table_drops_a_utf8_byte_order_mark():
    assert decode_table(b"\xef\xbb\xbfid,text\n", Path("t.csv")) == "id,text\n"


def test_table_rows_are_named_by_their_line(tmp_path):
    (tmp_path / "docs.csv").write_text(
        'id,text,topics,split\na,"two\nlines",x,train\nb,,x,train\nc,w,,test\n'
    )
    cfg = TableSource(path=str(tmp_path / "docs.csv"), id_column="id", split_column="split")
    with pytest.raises(CorpusValidationError) as info:
        validate_corpus(read_table(cfg), "docs.csv")
    assert "empty text: b (line 4)" in str(info.value)
    assert "without labels: c (line 5)" in str(info.value)


def test_a_valid_table_has_only_the_contract_columns(tmp_path):
    path = write_csv(tmp_path / "docs.csv", [{"text": "a", "topics": "x", "split": "train"}])
    frame = read_table(TableSource(path=str(path), split_column="split"))
    out, _ = validate_corpus(pd.concat([frame, frame.assign(split="test", doc_id="b")]), "d")
    assert list(out.columns) == ["doc_id", "split", "title", "text", "topics"]
