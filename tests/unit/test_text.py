import numpy as np

from rnnops.core.text import (
    OOV_ID,
    PAD_ID,
    TextSettings,
    build_vocab,
    encode,
    texts_to_ids,
    tokenize,
    vocab_index,
)


def test_wordpunct_lowercases_and_splits_punctuation():
    assert tokenize("Wheat PRICES rose 3.5 pct, U.S. said") == [
        "wheat",
        "prices",
        "rose",
        "3",
        ".",
        "5",
        "pct",
        ",",
        "u",
        ".",
        "s",
        ".",
        "said",
    ]


def test_treebank_keeps_case_when_asked_and_unescapes_html():
    assert tokenize("Shell &lt;SHEL> said", "treebank", lowercase=False)[:2] == ["Shell", "<"]


def test_vocab_orders_by_frequency_and_applies_caps():
    vocab = build_vocab([["b", "a", "a", "c"], ["a", "b", "d"]], max_vocab=4, min_freq=1)
    assert vocab == ["<pad>", "<oov>", "a", "b"]
    vocab = build_vocab([["b", "a", "a", "c"], ["a", "b", "d"]], max_vocab=100, min_freq=2)
    assert vocab == ["<pad>", "<oov>", "a", "b"]


def test_encode_truncates_the_configured_end_and_pads():
    index = vocab_index(["<pad>", "<oov>", "a", "b", "c"])
    tokens = [["a", "b", "c", "zzz"], ["c"]]
    post = encode(tokens, index, 3, truncating="post", padding="post")
    assert post.tolist() == [[2, 3, 4], [4, PAD_ID, PAD_ID]]
    pre = encode(tokens, index, 3, truncating="pre", padding="pre")
    assert pre.tolist() == [[3, 4, OOV_ID], [PAD_ID, PAD_ID, 4]]
    assert post.dtype == np.int32


def test_texts_to_ids_matches_manual_pipeline():
    vocab = ["<pad>", "<oov>", "oil", "prices"]
    ids = texts_to_ids(["OIL prices jump"], vocab_index(vocab), TextSettings(max_len=5))
    assert ids.tolist() == [[2, 3, OOV_ID, 0, 0]]


def test_wordpunct_matches_nltk_exactly():
    from nltk.tokenize import wordpunct_tokenize

    text = "Shell Canada <SHC.TO> said 1987 net fell 12.5 pct, to C$1.2 mln; ÉTAT déjà-vu... U.S. (Reuter)"
    assert tokenize(text, "wordpunct", lowercase=False) == wordpunct_tokenize(text)


def test_the_written_out_wordpunct_pattern_is_nltks():
    from nltk.tokenize import WordPunctTokenizer

    from rnnops.core.text import WORDPUNCT_PATTERN

    assert WordPunctTokenizer()._pattern == WORDPUNCT_PATTERN


def _real_corpus_texts() -> list[str]:
    """Every story of the Reuters corpus in NLTK_DATA (title line included), as served."""
    import pytest

    try:
        from nltk.corpus import reuters

        return [reuters.raw(f) for f in reuters.fileids()]
    except LookupError:
        pytest.skip("the NLTK Reuters corpus is not in NLTK_DATA")


def test_served_encoding_equals_the_training_encoding_on_the_whole_corpus():
    """Serving tokenizes only the kept end of a story; the ids must not change."""
    from rnnops.core.predictor import TopicPredictor
    from rnnops.core.text import TextSettings

    texts = _real_corpus_texts()
    assert len(texts) > 10_000
    edges = [  # cuts through a word, a punctuation run and HTML entities
        "&amp;" * 400 + " tail",
        "a.&#1234;b " * 300,
        "word" * 2000,
        ("x " * 149) + "&amp;lt;" + " y" * 50,
    ]
    whole = [tokenize(text) for text in texts + edges]  # what preprocess tokenizes
    vocab = ["<pad>", "<oov>", *sorted({t for tokens in whole[:3000] for t in tokens})]
    for settings in (
        TextSettings(max_len=150),
        TextSettings(max_len=40, truncating="pre"),
        TextSettings(max_len=7, padding="pre"),
    ):
        predictor = TopicPredictor(None, vocab, ["earn"], settings, decision=None)
        served = predictor.encode(texts + edges)
        trained = encode(
            whole, predictor._index, settings.max_len, settings.truncating, settings.padding
        )
        np.testing.assert_array_equal(served, trained)
