"""The study file: validated before anything runs, its cells sized, its points named."""

import copy
from pathlib import Path

import pytest
import yaml

from rnnops.core.config import ConfigError, parse_params
from rnnops.core.overrides import apply_overrides
from rnnops.core.study_plan import (
    STANDARD_PROBE,
    parse_study,
    plan_study,
    recurrent_weights,
    units_for_budget,
)

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STUDY = yaml.safe_load((ROOT / "study.yaml").read_text())


def study(**changes):
    raw = copy.deepcopy(STUDY)
    if "cells" in changes:  # the quick form names cells of its own
        raw["quick"] = {k: v for k, v in raw["quick"].items() if k not in ("cells", "probe_cells")}
    raw.update(changes)
    return raw


def plan(raw=None, quick=False, params=None):
    return plan_study(parse_study(raw or STUDY), params or PARAMS, quick)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (study(cell={"srnn": {}}), ["cell", "unknown key"]),
        (study(cells={}), ["cells", "at least 1"]),
        (study(seeds=[]), ["seeds", "at least 1"]),
        (study(seeds=[42, 42]), ["seed twice"]),
        (study(tasks={"R8!": {}}), ["tasks", "pattern"]),
        (study(probes={"late": {"preprocess": {}}}), ["probes.late.preprocess"]),
        (study(probes={"late": {"preprocess": {"truncating": "pre"}, "cells": ["x"]}}), ["x"]),
        (study(quick={"tasks": ["r9"]}), ["quick.tasks", "r9"]),
        (study(quick={"cells": ["nope"]}), ["quick.cells", "nope"]),
        (study(remedies={"variants": {}}), ["remedies.variants"]),
        ([1, 2], ["a mapping"]),
    ],
)
def test_a_bad_study_file_is_refused_with_the_key_named(raw, words):
    with pytest.raises(ConfigError) as err:
        plan(raw)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"budget": 50}, ["cannot match budget 50", "srnn"]),
        ({"cells": {"lstm": {"kind": "lstm", "units": 8}}}, ["cell lstm sets units"]),
        ({"cells": {"lstm": {"kind": "lstm", "layers": 0}}}, ["layers: 0", "skip-only"]),
        ({"cells": {"x": {"kind": "transformer"}}}, ["kind", "allowed values"]),
        ({"cells": {"x": {"kind": "gru", "unitz": 3}}}, ["unitz", "unknown key"]),
        ({"recipe": "nope"}, ["no model 'nope'"]),
        ({"also": ["nope"]}, ["no model 'nope'"]),
        ({"tasks": {"r8": {"label_set": "r9"}}}, ["tasks.r8", "label_set"]),
        ({"cells": {"boe": {"kind": "gru"}}}, ["two models would be named", "boe"]),
    ],
)
def test_a_study_that_cannot_be_planned_is_refused_before_anything_runs(changes, words):
    with pytest.raises(ConfigError) as err:
        plan(study(**changes))
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("kind", "bidirectional", "layers"),
    [("simple_rnn", False, 2), ("lstm", True, 1), ("gru", False, 1), ("gru", True, 2)],
)
def test_recurrent_weights_are_what_keras_builds(kind, bidirectional, layers):
    import keras

    cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    inputs = keras.Input((None, 12))
    x = inputs
    for i in range(layers):
        layer = cls[kind](7, return_sequences=i < layers - 1)
        x = keras.layers.Bidirectional(layer)(x) if bidirectional else layer(x)
    model = keras.Model(inputs, x)
    assert recurrent_weights(kind, bidirectional, layers, 7, 12) == model.count_params()


def test_every_cell_of_the_default_study_matches_the_budget():
    budget, tolerance = STUDY["budget"], STUDY["budget_tolerance"]
    point = next(p for p in plan().points if p.group == "cells")
    cells = [m for m in point.models if m.role == "cell"]
    assert {m.name for m in cells} == set(STUDY["cells"])
    for m in cells:
        assert abs(m.recurrent_weights - budget) <= tolerance * budget, m
        assert m.config["units"] == units_for_budget(m.config, budget, tolerance, m.name)
    # The one-direction cells get more units than the two-direction ones at the same budget.
    units = {m.name: m.config["units"] for m in cells}
    assert units["srnn"] > units["srnn_bi"] and units["lstm"] > units["lstm_bi"]
    assert not next(m for m in cells if m.name == "lstm").config["bidirectional"]


def test_a_point_is_valid_params_with_only_the_study_models():
    for point in plan().points:
        params = parse_params(apply_overrides(PARAMS, point.overrides), point.name)
        assert set(params.models) == {m.name for m in point.models}
        assert params.ensembles == {}
        assert all(cfg.seed == point.seed for cfg in params.models.values())
        for key, value in point.preprocess.items():
            assert getattr(params.preprocess, key) == value
    names = [p.name for p in plan().points]
    assert len(set(names)) == len(names)


def test_the_full_form_crosses_tasks_seeds_probes_remedies_and_fractions():
    points = plan().points
    tasks, seeds = set(STUDY["tasks"]), set(STUDY["seeds"])
    for group, per_task_seed in (
        ("cells", 1 + len(STUDY["probes"])),
        ("remedies", 1),
        ("fraction", len(STUDY["remedies"]["train_fractions"])),
    ):
        mine = [p for p in points if p.group == group]
        assert len(mine) == len(tasks) * len(seeds) * per_task_seed, group
        assert {p.task for p in mine} == tasks and {p.seed for p in mine} == seeds
    skip = next(p for p in points if p.group == "cells").models
    assert any(m.role == "skip_only" and m.config["layers"] == 0 for m in skip)
    assert {m.name for m in skip if m.role == "cell_skip"} == {f"{c}_skip" for c in STUDY["cells"]}


def test_the_quick_form_is_a_subset_with_cheaper_training():
    quick = plan(quick=True).points
    assert {p.task for p in quick} == set(STUDY["quick"]["tasks"])
    assert {p.seed for p in quick} == set(STUDY["quick"]["seeds"])
    assert all(
        m.config["epochs"] <= STUDY["quick"]["model"]["epochs"] for p in quick for m in p.models
    )
    cells = {m.cell for p in quick for m in p.models if m.cell}
    assert cells == set(STUDY["quick"]["cells"])
    assert plan(quick=True).study_id != plan().study_id


def test_point_names_follow_what_the_point_trains():
    base = {p.name for p in plan().points}
    assert {p.name for p in plan().points} == base  # stable
    changed = study(cells={**STUDY["cells"], "gru": {"kind": "gru", "dropout": 0.1}})
    renamed = {p.name for p in plan(changed).points} - base
    # Only the points holding the gru cells (every cells point) were renamed.
    assert renamed and all("-cells" in name for name in renamed)
    assert {p.name for p in plan(changed).points if p.group != "cells"} <= base


def test_probes_and_remedies_carry_their_settings():
    points = plan().points
    late = [p for p in points if p.probe == "late"]
    assert late and all(p.preprocess["truncating"] == "pre" for p in late)
    assert {p.probe for p in points} == {STANDARD_PROBE, *STUDY["probes"]}
    remedies = next(p for p in points if p.group == "remedies")
    article = {m.name: m.config for m in remedies.models}
    assert article["article"]["dropout"] == 0.0 and article["article_dropout"]["dropout"] == 0.25
    assert article["article"]["kind"] == "simple_rnn" and article["article"]["layers"] == 2
    fractions = sorted(p.fraction for p in points if p.group == "fraction" and p.seed == 42)
    assert fractions == sorted(STUDY["remedies"]["train_fractions"] * len(STUDY["tasks"]))


def test_dvc_override_prefixes_delete_and_add_keys():
    raw = {"models": {"rnn": {"kind": "simple_rnn"}, "lstm": {"kind": "lstm", "units": 3}}}
    out = apply_overrides(
        raw, {"~models.rnn": None, "~models.lstm": None, "+models.lstm.kind": "gru"}
    )
    assert out == {"models": {"lstm": {"kind": "gru"}}}
    assert raw["models"]["rnn"] == {"kind": "simple_rnn"}  # the input is not changed
    with pytest.raises(ConfigError, match=r"no models\.gone to delete"):
        apply_overrides(raw, {"~models.gone": None})
