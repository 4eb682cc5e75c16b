"""Schemathesis against /openapi.json (R12): no server errors, and every response matches the published schema."""

from __future__ import annotations

import tempfile

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kinema.service.app import create_app  # noqa: E402
from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.store import Store  # noqa: E402

_cfg = ServiceConfig(data_dir=tempfile.mkdtemp(prefix="kinema-schemathesis-"), workers=0, submit_rate=(0, 0),
                     read_rate=(0, 0), max_queued=100_000)  # fmt: skip
_store = Store(_cfg.db_path)
_KEY = _store.create_key("schemathesis")[1]
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_cfg, store=_store))


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_api_conforms_to_its_openapi(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_KEY}"},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance],
    )


def test_openapi_document_is_published_and_complete() -> None:
    from fastapi.testclient import TestClient

    doc = TestClient(create_app(_cfg, store=_store)).get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/content",
        "/v1/videos/{video_id}/events",
        "/v1/videos/{video_id}/cancel",
        "/v1/models",
        "/healthz",
    ):
        assert path in paths, path
    create = paths["/v1/videos"]["post"]
    assert set(create["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "bearer" in str(doc["components"]["securitySchemes"]).lower()
