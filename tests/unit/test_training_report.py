"""The training flow's report ranks models the way selection does: by validation."""

from flows.training_report import report_markdown


def run(model, validation, test):
    return {
        "run_id": f"{model}-run-id-0000",
        "model": model,
        "status": "FINISHED",
        "metrics": {"accuracy": test, "micro_f1": test, "macro_f1": test},
        "validation": {"macro_f1": validation},
        "url": f"http://mlflow/{model}",
    }


def test_models_are_ranked_by_validation_not_test():
    # b is better on test, a on validation: a comes first.
    report = report_markdown({}, [run("b", 0.40, 0.90), run("a", 0.50, 0.10)], [])
    rows = [
        line for line in report.splitlines() if line.startswith("| a ") or line.startswith("| b ")
    ]
    assert [r.split(" | ")[0] for r in rows] == ["| a", "| b"]
    assert "validation macro_f1" in report and "test macro_f1" in report
    assert "| a | 0.5000 | 0.1000 | 0.1000 | 0.1000 |" in report


def test_a_run_without_validation_metrics_goes_last():
    old = run("old", 0.0, 0.99)
    del old["validation"]
    report = report_markdown({}, [old, run("new", 0.3, 0.2)], [])
    assert report.index("| new |") < report.index("| old |")
    assert "| old | nan |" in report


def test_the_comparison_report_is_linked_where_a_browser_opens_it():
    url = "http://mlflow:5000/#/experiments/1/runs/abc?workflowType=machine_learning"
    report = report_markdown(
        {"comparison": "/p/reports/comparison.html"},
        [{**run("lstm", 0.5, 0.5), "url": url}],
        [],
    )
    assert "file://" not in report
    assert (
        "(http://mlflow:5000/#/experiments/1/runs/abc/artifacts/comparison/comparison.html"
        "?workflowType=machine_learning)" in report
    )
    assert "on disk `/p/reports/comparison.html`" in report
