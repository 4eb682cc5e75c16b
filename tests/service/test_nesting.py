"""Deeply nested JSON is refused with 400 naming the field, on the fast path, the multipart form and storyboards
(it answered 500 with a RecursionError traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.jsonio import MAX_JSON_DEPTH

DEEP = "[" * 5000 + "]" * 5000  # beyond Python's recursion limit
SHALLOW_BUT_TOO_DEEP = "[" * (MAX_JSON_DEPTH + 2) + "]" * (MAX_JSON_DEPTH + 2)  # parses, but over the limit


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(make_config(tmp_path, workers=0, auth=False)), raise_server_exceptions=False)


@pytest.mark.parametrize("nested", [DEEP, SHALLOW_BUT_TOO_DEEP])
def test_nested_json_is_a_400_naming_the_field(client: TestClient, nested: str) -> None:
    json_headers = {"content-type": "application/json"}
    answers = {
        "body metadata": client.post(
            "/v1/videos", content=f'{{"prompt": "x", "metadata": {nested}}}', headers=json_headers
        ),
        "multipart metadata": client.post("/v1/videos", data={"prompt": "x", "metadata": nested}),
        "storyboard title": client.post(
            "/v1/storyboards", content=f'{{"title": {nested}, "scenes": []}}', headers=json_headers
        ),
    }
    params = {"body metadata": "metadata", "multipart metadata": "metadata", "storyboard title": "title"}
    for where, answer in answers.items():
        assert answer.status_code == 400, (where, answer.text[:200])
        error = answer.json()["error"]
        assert error["param"] == params[where] and "levels deep" in error["message"], where


def test_ordinary_metadata_still_passes(client: TestClient) -> None:
    answer = client.post("/v1/videos", json={"prompt": "x", "metadata": {"a": [{"b": [1, 2]}]}})
    assert answer.status_code == 200, answer.text
