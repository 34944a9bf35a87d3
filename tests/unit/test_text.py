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
