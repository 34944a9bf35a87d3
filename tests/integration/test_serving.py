"""`rnnops serve` as a real process on 127.0.0.1, serving the tiny-corpus champion.

The server and champion fixtures live in conftest.py; faults and load are in tests/reliability/.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import BIN_DIR, SERVE_MAX_DOCUMENTS, free_port, run

pytestmark = pytest.mark.integration

MODEL = "reuters-topics"
MAX_DOCUMENTS = SERVE_MAX_DOCUMENTS


def sample_texts(project: Path) -> list[str]:
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    raw = raw[raw["split"] == "test"]
    return [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)]


def strict_json(resp: httpx.Response):
    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    assert resp.headers["content-type"].startswith("application/json")
    return json.loads(resp.text, parse_constant=no_constants)


def expected(pyfunc, texts: list[str]) -> list[dict]:
    out = pyfunc.predict(pd.DataFrame({"text": texts}))
    return [
        {
            "topics": list(t),
            "scores": [float(x) for x in s],
            "top_topic": tt,
            "top_score": float(ts),
        }
        for t, s, tt, ts in zip(
            out["topics"], out["scores"], out["top_topic"], out["top_score"], strict=True
        )
    ]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["topics"] == w["topics"] and g["top_topic"] == w["top_topic"]
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)
        assert g["top_score"] == pytest.approx(w["top_score"], abs=1e-5)


def test_health_reports_the_champion_version(server, champion):
    _, _, _, version, _ = champion
    body = strict_json(server.get("/health"))
    assert body["status"] == "ok"
    assert body["model"]["name"] == MODEL and body["model"]["version"] == version
    assert body["model"]["alias"] == "champion"


def test_predictions_equal_the_in_process_pyfunc(server, champion):
    project, _, _, version, pyfunc = champion
    texts = sample_texts(project)[:MAX_DOCUMENTS]
    want = expected(pyfunc, texts)
    body = strict_json(server.post("/predict", json={"text": texts}))
    assert body["model"]["version"] == version
    assert_same(body["predictions"], want)
    one = strict_json(server.post("/predict", json={"text": texts[0]}))
    assert_same(one["predictions"], want[:1])


def test_serve_refuses_to_start_without_a_champion(champion, tmp_path):
    project, env, _, _, _ = champion
    proc = run(
        [str(BIN_DIR / "rnnops"), "serve", "--port", str(free_port()), "--alias", "nobody"],
        project,
        env,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "models:/reuters-topics@nobody" in proc.stderr and "not found" in proc.stderr
