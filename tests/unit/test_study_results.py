"""The study's sentences: a claim only when the per-seed differences carry it."""

import math

from rnnops.core.study_report import learning_curve, quartile_gap, study_markdown
from rnnops.core.study_results import (
    Difference,
    direction_pairs,
    gated_pairs,
    paired,
    sentence,
    summary_rows,
)

CELLS = {
    "srnn": {"kind": "simple_rnn", "bidirectional": False},
    "lstm": {"kind": "lstm", "bidirectional": False},
    "lstm_bi": {"kind": "lstm", "bidirectional": True},
}


def row(model, seed, score, quartiles=(0.8, 0.8), task="r8", probe="standard", **extra):
    return {
        "point": f"p-{task}-{probe}-{seed}",
        "group": extra.pop("group", "cells"),
        "task": task,
        "task_kind": "singlelabel",
        "seed": seed,
        "probe": probe,
        "fraction": extra.pop("fraction", 1.0),
        "model": model,
        "role": extra.pop("role", "cell"),
        "kind": CELLS.get(model, {}).get("kind", "lstm"),
        "bidirectional": CELLS.get(model, {}).get("bidirectional", False),
        "skip": False,
        "units": 8,
        "recurrent_weights": 100,
        "accuracy": score,
        "micro_f1": score,
        "macro_f1": score - 0.1,
        "val_accuracy": score + 0.01,
        "val_micro_f1": score + 0.01,
        "val_macro_f1": score - 0.09,
        "train_seconds": 10.0,
        "quartiles": [{"micro_f1": q, "accuracy": q} for q in quartiles],
        **extra,
    }


def test_a_difference_is_claimed_only_past_twice_its_standard_error():
    assert Difference(3, 0.02, 0.002).clear
    assert not Difference(3, 0.02, 0.03).clear  # the seeds disagree
    assert not Difference(1, 0.20, 0.0).clear  # one seed has no spread
    assert not Difference(5, 0.001, 0.0).clear  # too small to matter


def test_paired_differences_are_taken_per_seed():
    rows = [row("lstm", s, 0.90 + d) for s, d in ((42, 0.0), (43, 0.01), (44, 0.02))]
    rows += [row("srnn", s, 0.80 + d) for s, d in ((42, 0.0), (43, 0.01), (44, 0.02))]
    diff = paired(rows, "lstm", "srnn", "accuracy", task="r8")
    # The seeds move both models together: the difference is exact, no spread.
    assert diff.n == 3 and math.isclose(diff.mean, 0.10) and diff.sd < 1e-9
    assert paired(rows, "lstm", "gru", "accuracy", task="r8") is None
    assert paired(rows, "lstm", "srnn", "accuracy", task="r52") is None


def test_sentences_say_beats_within_the_spread_or_one_seed():
    assert "`a` beats `b` by 2.00 ± 0.20 points (3 seeds)" in sentence(
        "`a`", "`b`", Difference(3, 0.02, 0.002), "R8"
    )
    assert "`b` beats `a`" in sentence("`a`", "`b`", Difference(3, -0.02, 0.002), "R8")
    assert "too weak to tell" in sentence("`a`", "`b`", Difference(3, 0.02, 0.05), "R8")
    one = sentence("`a`", "`b`", Difference(1, -0.03, 0.0), "R8")
    assert "`b` scores 3.00 points above `a` on one seed" in one and "too weak" in one


def test_pairs_come_from_the_cells():
    assert gated_pairs(CELLS) == [("lstm", "srnn")]
    assert direction_pairs(CELLS) == [("lstm_bi", "lstm")]


def test_the_quartile_gap_is_the_change_of_the_lead_from_short_to_long():
    rows = []
    for seed in (42, 43, 44):
        rows.append(row("lstm", seed, 0.9, quartiles=(0.90, 0.85)))
        rows.append(row("srnn", seed, 0.8, quartiles=(0.89, 0.70)))
    gap = quartile_gap(rows, "lstm", "srnn", task="r8")
    assert math.isclose(gap.mean, 0.15 - 0.01) and gap.clear


def test_the_report_answers_in_sentences_and_tables():
    rows = []
    for seed, noise in ((42, 0.0), (43, 0.004), (44, -0.003)):
        rows.append(row("lstm", seed, 0.95 + noise, quartiles=(0.96, 0.94)))
        rows.append(row("srnn", seed, 0.90 - noise, quartiles=(0.95, 0.85)))
        rows.append(row("lstm_bi", seed, 0.951 - noise))
        rows.append(row("boe", seed, 0.95, role="skip_only"))
        rows.append(row("article", seed, 0.90, group="remedies", role="remedy_baseline"))
        rows.append(row("article_l2", seed, 0.90 + noise, group="remedies", role="remedy"))
        rows.append(row("article", seed, 0.85, group="fraction", fraction=0.5))
    meta = {"tasks": {"r8": "singlelabel"}, "cells": CELLS, "probes": {}, "points": 9}
    baselines = {"r8": {"accuracy": 0.9743, "micro_f1": 0.9743, "macro_f1": 0.9}}
    md = study_markdown("s-1", rows, baselines, meta, {"study_cells.png": "study/x.png"})
    assert "On R8 (accuracy), `lstm` beats `srnn` by" in md
    assert "the longest quartile of R8" in md and "grows by" in md
    assert "`lstm_bi` and `lstm` differ by" in md and "too weak to tell" in md
    assert "`article_l2` and `article` differ by" in md
    assert "| 0.5 | 3 |" in md and "| 1 | 3 |" in md  # the learning curve
    assert "TF-IDF + linear SVM | – | – | – | – | 0.9743" in md
    assert "![study_cells.png](study/x.png)" in md
    summary = summary_rows(rows, "accuracy", task="r8", group="cells")
    assert [s["model"] for s in summary] == ["lstm", "srnn", "lstm_bi", "boe"]
    assert learning_curve(rows, "r8", "accuracy")[0][0] == 0.5
