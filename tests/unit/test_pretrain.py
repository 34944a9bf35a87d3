import numpy as np
import pytest

from rnnops.core.config import ModelConfig, PretrainConfig, parse_params
from rnnops.core.models import build_model
from rnnops.stages.pretrain import PretrainedEmbeddingsError, load_embeddings, train_word2vec

CFG = PretrainConfig(dim=8, window=3, epochs=30, seed=1)


def clustered_documents(n=200, seed=0):
    """Documents drawn from two disjoint word groups (ids 2-6 and 7-11), padded with 0."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 12), dtype=np.int32)
    for i in range(n):
        group = np.arange(2, 7) if i % 2 else np.arange(7, 12)
        length = rng.integers(6, 12)
        x[i, :length] = rng.choice(group, size=length)
    return x


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_word2vec_learns_which_words_go_together():
    vectors = train_word2vec(clustered_documents(), vocab_size=15, cfg=CFG)
    assert vectors.shape == (15, 8) and vectors.dtype == np.float32
    # Padding, <oov> and ids that never occur (12-14) stay zero.
    assert not vectors[[0, 1, 12, 13, 14]].any()
    within = np.mean(
        [cosine(vectors[a], vectors[b]) for a in range(2, 7) for b in range(2, 7) if a < b]
    )
    across = np.mean([cosine(vectors[a], vectors[b]) for a in range(2, 7) for b in range(7, 12)])
    assert within > across + 0.3


def test_word2vec_is_deterministic():
    docs = clustered_documents()
    np.testing.assert_array_equal(train_word2vec(docs, 15, CFG), train_word2vec(docs, 15, CFG))


def test_embeddings_start_the_model_and_must_fit_it(tmp_path):
    vectors = np.arange(15 * 8, dtype=np.float32).reshape(15, 8) / 100
    np.save(tmp_path / "embeddings.npy", vectors)
    loaded = load_embeddings(tmp_path, 15, 8)
    cfg = ModelConfig(kind="lstm", units=4, embedding_dim=8, embedding_init="word2vec")
    model = build_model(cfg, 15, 3, 6, "multilabel", embeddings=loaded)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], vectors)
    with pytest.raises(PretrainedEmbeddingsError, match=r"embedding_dim to pretrain.dim"):
        load_embeddings(tmp_path, 15, 16)
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain"):
        load_embeddings(tmp_path / "missing", 15, 8)


def test_word2vec_models_need_the_pretrained_dimension():
    from rnnops.core.config import ConfigError

    raw = {
        "pretrain": {"dim": 64},
        "models": {"m": {"kind": "lstm", "embedding_dim": 128, "embedding_init": "word2vec"}},
    }
    with pytest.raises(ConfigError, match=r"models.m.embedding_dim is 128 .*pretrain.dim 64"):
        parse_params(raw)
    raw["models"]["m"]["embedding_dim"] = 64
    assert parse_params(raw).models["m"].embedding_init == "word2vec"


def test_saved_models_do_not_carry_their_starting_values_in_the_config(tmp_path):
    import zipfile

    from rnnops.core.models import prior_bias

    vectors = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    cfg = ModelConfig(kind="lstm", units=4, embedding_dim=16, embedding_init="word2vec")
    bias = prior_bias(np.eye(3)[[0, 1, 1, 2]], 3, "multilabel")
    model = build_model(cfg, 500, 3, 6, "multilabel", output_bias=bias, embeddings=vectors)
    np.testing.assert_allclose(model.get_layer("topics").get_weights()[1], bias)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config_bytes = z.getinfo("config.json").file_size
    # The 8,000 starting values live in the weights file only.
    assert config_bytes < 20_000, config_bytes
