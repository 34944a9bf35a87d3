import pytest
import yaml
from pydantic import ValidationError

from rnnops.core.config import ConfigError, load_params, parse_params
from rnnops.core.overrides import apply_overrides
from tests_support import PROJECT_ROOT


def shipped() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def bad(overrides: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(apply_overrides(shipped(), overrides))
    return str(info.value)


def test_shipped_params_are_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert {"rnn", "lstm"} <= set(params.models)
    rnn = params.models["rnn"]
    assert (rnn.kind, rnn.layers, rnn.pooling) == ("simple_rnn", 2, "last")
    assert params.preprocess.task == "multilabel"


def test_unknown_key_is_named():
    msg = bad({"models.lstm.unitz": 3})
    assert "models.lstm.unitz" in msg and "unknown key" in msg


def test_units_must_be_positive():
    msg = bad({"models.lstm.units": 0})
    assert "models.lstm.units" in msg and "greater than or equal to 1" in msg


def test_unknown_model_kind_lists_allowed_values():
    msg = bad({"models.rnn.kind": "transformer"})
    assert "models.rnn.kind" in msg
    assert "'simple_rnn', 'lstm' or 'gru'" in msg and "transformer" in msg


def test_max_len_at_least_one():
    assert "preprocess.max_len" in bad({"preprocess.max_len": 0})


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.1])
def test_validation_fraction_inside_open_interval(value):
    msg = bad({"preprocess.val_fraction": value})
    assert "preprocess.val_fraction" in msg


def test_wrong_type_is_named():
    msg = bad({"models.lstm.epochs": "many"})
    assert "models.lstm.epochs" in msg and "'many'" in msg


def test_singlelabel_needs_a_benchmark_label_set():
    msg = bad({"preprocess.task": "singlelabel"})
    assert "label_set" in msg and "r8" in msg


def test_table_source_needs_a_path():
    msg = bad({"ingest.source": "table"})
    assert "ingest.table.path" in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)


def test_overrides_apply_dotted_keys():
    params = parse_params(apply_overrides(shipped(), {"models.lstm.units": 17}))
    assert params.models["lstm"].units == 17
    assert params.models["rnn"].units != 17 or shipped()["models"]["rnn"]["units"] == 17


def test_params_are_frozen():
    params = parse_params(shipped())
    with pytest.raises(ValidationError):
        params.models["lstm"].units = 3


def test_shipped_ensembles_name_defined_models():
    params = load_params(PROJECT_ROOT / "params.yaml")
    for name, ensemble in params.ensembles.items():
        assert set(ensemble.members) <= set(params.models)
        assert params.kind(name) == "ensemble"
    assert params.candidates == [*params.models, *params.ensembles]


def test_ensemble_member_must_be_a_defined_model():
    msg = bad({"ensembles": {"pair": {"members": ["rnn", "bilstm"]}}})
    assert "ensembles.pair.members" in msg and "bilstm" in msg and "defined:" in msg


@pytest.mark.parametrize(
    "ensemble, expected",
    [
        ({"members": ["rnn"]}, "at least 2"),
        ({"members": ["rnn", "rnn"]}, "lists a model twice"),
        ({"members": ["rnn", "lstm"], "weights": [1, 2]}, "unknown key"),
    ],
)
def test_ensemble_needs_two_distinct_members(ensemble, expected):
    msg = bad({"ensembles": {"pair": ensemble}})
    assert "ensembles.pair" in msg and expected in msg


def test_ensemble_and_model_names_may_not_clash():
    msg = bad({"ensembles": {"lstm": {"members": ["rnn", "srnn"]}}})
    assert "ensembles.lstm" in msg and "same name" in msg


def test_params_without_ensembles_are_valid():
    raw = shipped()
    del raw["ensembles"]
    params = parse_params(raw)
    assert params.ensembles == {} and params.candidates == list(params.models)


@pytest.mark.parametrize(
    "key, value",
    [("refit_epochs", -1), ("refit_learning_rate_scale", 0.0), ("refit_learning_rate_scale", 2)],
)
def test_refit_settings_are_checked(key, value):
    msg = bad({f"models.lstm.{key}": value})
    assert f"models.lstm.{key}" in msg


def test_word2vec_model_without_the_pretrained_vectors_is_refused_before_any_run(tmp_path):
    """`rnnops train` of a word2vec model without --pretrained exits 2 naming the fix."""
    import subprocess
    import sys

    import yaml

    params = {
        "models": {"m": {"kind": "lstm", "embedding_dim": 128, "embedding_init": "word2vec"}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'never.db'}"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnops",
            "--params",
            str(tmp_path / "params.yaml"),
            "train",
            "m",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--pretrained data/pretrained" in proc.stderr
    assert not (tmp_path / "never.db").exists() and not (tmp_path / "out").exists()


def test_a_check_across_models_names_the_keys_without_echoing_the_section():
    from rnnops.core.config import ConfigError, parse_params

    raw = {
        "pretrain": {"dim": 64},
        "models": {"m": {"kind": "lstm", "embedding_dim": 32, "embedding_init": "word2vec"}},
    }
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    message = str(err.value)
    assert "models.m.embedding_dim is 32" in message and "pretrain.dim 64" in message
    assert "{" not in message and "Value error" not in message
