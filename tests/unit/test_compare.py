"""The comparison report: pure cores, and the report written from synthetic stage outputs."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnops.core.config import ModelConfig
from rnnops.core.html_report import markdown_to_html
from rnnops.stages.compare import (
    FIGURES,
    bucket_metrics,
    length_edges,
    per_class_side_by_side,
    plot_learning_curves,
    plot_per_class,
    run_compare,
    summary_table,
)
from rnnops.stages.compare_report import markdown_table, promotion_line


def test_summary_table_best_on_validation_first():
    metrics = {
        "rnn": {
            "macro_f1": 0.4,
            "micro_f1": 0.6,
            "accuracy": 0.5,
            "trainable_params": 10,
            "validation": {"macro_f1": 0.5, "micro_f1": 0.7},
        },
        "lstm": {
            "macro_f1": 0.7,
            "micro_f1": 0.8,
            "accuracy": 0.6,
            "trainable_params": 20,
            "validation": {"macro_f1": 0.45, "micro_f1": 0.75},
        },
    }
    table = summary_table(metrics, {"rnn": "simple_rnn", "lstm": "lstm"})
    # lstm is better on test, rnn on validation: validation decides the order.
    assert list(table["model"]) == ["rnn", "lstm"]
    assert list(table["kind"]) == ["simple_rnn", "lstm"]
    assert table.loc[0, "val_micro_f1"] == 0.7 and table.loc[1, "trainable_params"] == 20


def test_per_class_side_by_side_orders_by_support():
    a = pd.DataFrame({"label": ["x", "y"], "support": [1, 5], "f1": [0.1, 0.5]})
    b = pd.DataFrame({"label": ["x", "y"], "support": [1, 5], "f1": [0.2, 0.9]})
    table = per_class_side_by_side({"rnn": a, "lstm": b})
    assert list(table.columns) == ["label", "support", "rnn", "lstm"]
    assert list(table["label"]) == ["y", "x"] and table.loc[0, "lstm"] == 0.9


def test_bucket_metrics_by_length():
    lengths = pd.Series([5, 10, 50, 100], index=["a", "b", "c", "d"])
    preds = pd.DataFrame(
        {
            "doc_id": ["a", "b", "c", "d"],
            "actual": ["earn", "earn;grain", "crude", "grain"],
            "predicted": ["earn", "earn", "grain", "crude"],
        }
    )
    edges = length_edges(lengths.to_numpy(), buckets=2)
    table = bucket_metrics(preds, lengths, edges)
    assert list(table["documents"]) == [2, 2]
    short, long = table.iloc[0], table.iloc[1]
    assert short["accuracy"] == 0.5 and long["accuracy"] == 0.0
    # short: tp 2, fn 1 -> 4 / 5; long: nothing right
    assert short["micro_f1"] == pytest.approx(0.8) and long["micro_f1"] == 0.0
    assert table["bucket"].iloc[0].startswith("5–")


def test_length_edges_degenerate():
    assert list(length_edges(np.array([7, 7, 7]))) == [7, 8]


def test_html_is_self_contained_and_escapes_what_it_quotes():
    md = (
        "# T\n\n| a | b |\n|---|---|\n| **1** | `<b>` |\n\n![fig](x.png)\n\n"
        "<script>alert(1)</script>\n"
    )
    out = markdown_to_html(md, {"x.png": b"\x89PNG"}, "Report <1>")
    assert "<table>" in out and "<strong>1</strong>" in out and "<code>&lt;b&gt;</code>" in out
    assert "data:image/png;base64,iVBORw==" in out and 'src="x.png"' not in out
    # Raw HTML in the markdown is text, never markup; so is the title.
    assert "<script>" not in out and "<title>Report &lt;1&gt;</title>" in out


def _write_outputs(root, names):
    rng = np.random.default_rng(0)
    labels = ["crude", "earn", "grain"]
    doc_ids = np.array([f"test/{i}" for i in range(12)])
    lengths = rng.integers(5, 200, size=12).astype(np.int32)
    data = root / "data" / "processed"
    data.mkdir(parents=True)
    np.savez(
        data / "test.npz",
        x=np.zeros((12, 4), dtype=np.int32),
        y=np.zeros((12, 3), dtype=np.int8),
        doc_ids=doc_ids,
        lengths=lengths,
    )
    for i, name in enumerate(names):
        (root / "metrics").mkdir(exist_ok=True)
        (root / "metrics" / f"{name}.json").write_text(
            json.dumps(
                {
                    "model": name,
                    "task": "multilabel",
                    "accuracy": 0.5 + i / 10,
                    "micro_f1": 0.6,
                    "macro_f1": 0.4 + i / 10,
                    "validation": {"micro_f1": 0.7, "macro_f1": 0.5 + i / 10},
                    "epochs": 2,
                    "train_seconds": 3.5,
                    "trainable_params": 100 * (i + 1),
                }
            )
        )
        (root / "models" / name).mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}).to_csv(
            root / "models" / name / "history.csv", index=False
        )
        ev = root / "reports" / "eval" / name
        ev.mkdir(parents=True)
        pd.DataFrame(
            {"label": labels, "precision": 0.5, "recall": 0.5, "f1": [0.1, 0.5, 0.9], "support": 4}
        ).to_csv(ev / "per_class.csv", index=False)
        pd.DataFrame(
            {
                "doc_id": doc_ids,
                "actual": rng.choice(labels, 12),
                "predicted": rng.choice(labels, 12),
                "score": 0.5,
            }
        ).to_csv(ev / "predictions.csv", index=False)


def test_run_compare_lists_every_model_with_its_figures(tmp_path):
    names = ["rnn", "lstm", "gru"]
    _write_outputs(tmp_path, names)
    result = run_compare(
        names,
        {"rnn": "simple_rnn", "lstm": "lstm", "gru": "gru"},
        tmp_path / "metrics",
        tmp_path / "models",
        tmp_path / "reports" / "eval",
        tmp_path / "data" / "processed",
        None,
        tmp_path / "reports" / "comparison.md",
        tmp_path / "reports" / "comparison.html",
        tmp_path / "plots" / "comparison",
        baseline=False,
        twins={"gru": {"skip_only": "rnn", "no_skip": None}},
        model_configs={
            "rnn": ModelConfig(kind="lstm", layers=0, embedding_skip=["max"]),
            "lstm": ModelConfig(kind="lstm"),
            "gru": ModelConfig(kind="gru", embedding_skip=["max"]),
        },
    )
    md = (tmp_path / "reports" / "comparison.md").read_text()
    assert "## Ablation" in md and "Best by validation macro-F1: **gru** (0.7000" in md
    # gru 0.6 / 0.6 beside its skip-only twin rnn 0.6 / 0.4; no no-skip twin in this run.
    assert "| gru | 0.6000 / 0.6000 | rnn | 0.6000 / 0.4000 | +0.0000 / +0.2000 | – |" in md
    assert result.ablation[0]["gain_over_skip_only_macro_f1"] == pytest.approx(0.2)
    # Every recurrent model beside the bag of embeddings (rnn here has no recurrent layer).
    assert "## Beside the bag of embeddings" in md
    assert "| lstm | 0.6000 / 0.5000 | rnn | 0.6000 / 0.4000 | +0.0000 / +0.1000 |" in md
    html = (tmp_path / "reports" / "comparison.html").read_text()
    for name in names:
        assert f"| {name} |" in md and f"<td>{name}</td>" in html
    for figure in FIGURES:
        assert (tmp_path / "plots" / "comparison" / figure).stat().st_size > 1000
        assert f"../plots/comparison/{figure}" in md
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert set(result.buckets["model"]) == set(names)
    assert list(result.summary["model"]) == ["gru", "lstm", "rnn"]


def test_run_compare_refuses_missing_evaluations(tmp_path):
    _write_outputs(tmp_path, ["rnn"])
    with pytest.raises(FileNotFoundError, match="lstm"):
        run_compare(
            ["rnn", "lstm"],
            {},
            tmp_path / "metrics",
            tmp_path / "models",
            tmp_path / "reports" / "eval",
            tmp_path / "data" / "processed",
            None,
            tmp_path / "c.md",
            tmp_path / "c.html",
            tmp_path / "plots",
            baseline=False,
        )


def test_counts_stay_integers_when_a_model_has_none():
    metrics = {
        "lstm": {"epochs": 13, "trainable_params": 20, "validation": {"macro_f1": 0.5}},
        "pair": {"epochs": None, "trainable_params": 40, "validation": {"macro_f1": 0.6}},
    }
    lines = markdown_table(summary_table(metrics, {"lstm": "lstm", "pair": "ensemble"}))
    assert any(line.startswith("| lstm | lstm | 20 |") and "| 13 |" in line for line in lines)
    assert any(line.startswith("| pair | ensemble | 40 |") and "| – |" in line for line in lines)
    assert not any("13.0" in line for line in lines)


def test_the_report_names_the_champion():
    promoted = {
        "decision": "champion",
        "reason": "no champion yet",
        "candidate": "lstm",
        "candidate_version": "3",
        "champion_version": None,
        "registered_model": "reuters-topics",
    }
    assert promotion_line(promoted).startswith(
        "Champion (`models:/reuters-topics@champion`): **reuters-topics v3**, `lstm` (v3)."
    )
    kept = {**promoted, "decision": "rejected", "reason": "worse", "champion_version": "2"}
    assert "**reuters-topics v2** (kept)" in promotion_line(kept)


def test_figures_stay_legible_for_many_models(tmp_path):
    import matplotlib.image as mpimg

    models = [f"model{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    per_class = pd.DataFrame(
        {"label": [f"topic{i}" for i in range(40)], **{m: rng.random(40) for m in models}}
    )
    plot_per_class(per_class, models, tmp_path / "per_class.png")
    height, width = mpimg.imread(tmp_path / "per_class.png").shape[:2]
    # At most a page wide, and tall enough for a readable row per topic (30 shown).
    assert width <= 1000 and 30 * 18 <= height <= 1400, (width, height)
    history = pd.DataFrame(
        {"epoch": [1, 2], "loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "val_micro_f1": [0.2, 0.4]}
    )
    plot_learning_curves({m: history for m in models}, tmp_path / "curves.png")
    height, width = mpimg.imread(tmp_path / "curves.png").shape[:2]
    assert width > 3 * height  # three panels: both losses and the validation score
