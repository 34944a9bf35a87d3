import pytest

from rnnops.core.ablation import (
    bag_of_embeddings_gaps,
    find_twins,
    no_skip_twin,
    same_network,
    skip_only_twin,
    twins_of,
)
from rnnops.core.config import ModelConfig

SKIPPED = ModelConfig(kind="gru", bidirectional=True, units=32, embedding_skip=["max", "mean"])


def test_twins_drop_the_recurrent_layer_or_the_skip():
    assert skip_only_twin(SKIPPED).layers == 0
    assert skip_only_twin(SKIPPED).embedding_skip == ("max", "mean")
    assert no_skip_twin(SKIPPED).embedding_skip == () and no_skip_twin(SKIPPED).layers == 1
    assert twins_of(no_skip_twin(SKIPPED)) == {} and twins_of(skip_only_twin(SKIPPED)) == {}


def test_skip_only_twins_ignore_keys_of_the_missing_recurrent_layer():
    bag = ModelConfig(kind="lstm", layers=0, units=8, embedding_skip=["max", "mean"])
    assert same_network(bag, skip_only_twin(SKIPPED))
    assert not same_network(bag.model_copy(update={"seed": 1}), skip_only_twin(SKIPPED))
    assert not same_network(
        no_skip_twin(SKIPPED), no_skip_twin(SKIPPED).model_copy(update={"units": 8})
    )


def test_skip_dropout_belongs_to_the_model_with_both_paths():
    both = SKIPPED.model_copy(update={"skip_dropout": 0.5})
    assert same_network(no_skip_twin(both), no_skip_twin(SKIPPED))
    assert same_network(skip_only_twin(both), skip_only_twin(SKIPPED))
    assert not same_network(both, SKIPPED)


def test_find_twins_names_what_the_run_has():
    models = {
        "bigru_skip": SKIPPED,
        "bigru": no_skip_twin(SKIPPED),
        "boe": ModelConfig(kind="simple_rnn", layers=0, embedding_skip=["max", "mean"]),
        "lstm_skip": SKIPPED.model_copy(update={"kind": "lstm", "learning_rate": 0.01}),
    }
    twins = find_twins(models)
    assert twins["bigru_skip"] == {"skip_only": "boe", "no_skip": "bigru"}
    # A different learning rate is a different network: lstm_skip has no twin here.
    assert twins["lstm_skip"] == {"skip_only": None, "no_skip": None}
    assert set(twins) == {"bigru_skip", "lstm_skip"}


def test_recurrent_models_beside_the_bags_of_embeddings():
    models = {
        "lstm": no_skip_twin(SKIPPED),
        "boe": skip_only_twin(SKIPPED),
        "rnn": ModelConfig(kind="simple_rnn", layers=2),
    }
    metrics = {
        "lstm": {"micro_f1": 0.85, "macro_f1": 0.40},
        "boe": {"micro_f1": 0.87, "macro_f1": 0.46},
        "rnn": {"micro_f1": 0.73, "macro_f1": 0.15},
    }
    rows = {r["model"]: r for r in bag_of_embeddings_gaps(models, metrics)}
    assert set(rows) == {"lstm", "rnn"} and rows["lstm"]["bag"] == "boe"
    assert rows["lstm"]["gain_micro_f1"] == pytest.approx(-0.02)
    assert rows["rnn"]["gain_macro_f1"] == pytest.approx(-0.31)
    # Without a bag of embeddings in the run there is nothing to set beside.
    assert bag_of_embeddings_gaps({"lstm": models["lstm"]}, metrics) == []
