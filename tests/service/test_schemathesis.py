"""Schemathesis against /openapi.json (R12): every operation (the ``POST /v1/videos`` body included), schema-valid
and schema-violating data, and every check schemathesis has: no server errors, every response (event streams too)
matches the published schema, schema-violating requests are refused, undeclared methods get 405 with a true
``Allow``, and so on.

One check is adjusted: ``positive_data_acceptance`` wants every schema-valid request accepted, but some refusals
depend on things no schema can say (the chosen backend's step limit, whether a cursor's video exists, whether a form
field's text is JSON, whether an uploaded file's bytes are a decodable image or clip). Such a refusal is allowed as
a 400 (or a 422 for a file that does not decode) that names the field it blames, which the extra check
:func:`schema_valid_refusals_name_the_field` enforces. Examples are bounded to keep the run short on 2 cores.
"""

from __future__ import annotations

import json
import tempfile

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from kinema.service.app import create_app  # noqa: E402
from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.store import Store  # noqa: E402

_cfg = ServiceConfig(
    data_dir=tempfile.mkdtemp(prefix="kinema-schemathesis-"),
    workers=0,
    submit_rate=(0, 0),
    read_rate=(0, 0),
    max_queued=100_000,
    max_active_per_key=100_000,
)
_store = Store(_cfg.db_path)
_KEY = _store.create_key("schemathesis")[1]
_CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "deterministic": True},
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422", "429"]}
        },
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_cfg, store=_store), config=_CONFIG)


def schema_valid_refusals_name_the_field(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """A schema-valid request refused with 400 or 422 must say which field is wrong (``error.param``)."""
    meta = case.meta
    if response.status_code not in (400, 422) or meta is None or not meta.generation.mode.is_positive:
        return
    param = json.loads(response.content)["error"]["param"]
    assert param is not None, f"a schema-valid request was refused without naming a field: {response.text}"


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_KEY}"}, additional_checks=[schema_valid_refusals_name_the_field]
    )


def test_every_operation_is_fuzzed() -> None:
    operations = {op.ok().label for op in schema.get_all_operations()}
    assert "POST /v1/videos" in operations and "GET /v1/videos/{video_id}/events" in operations
    assert len(operations) == 22, sorted(operations)


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
    event = paths["/v1/videos/{video_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert event["schema"]["type"] == "object" and "video.completed" in event["schema"]["properties"]["event"]["enum"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/videos", "GET, HEAD, POST"),
        ("OPTIONS", "/v1/videos/video_x", "DELETE, GET, HEAD"),
        ("PUT", "/v1/videos/video_x/cancel", "POST"),
        ("GET", "/v1/prompts", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_undeclared_methods_get_405_with_the_routes_methods(method: str, path: str, allow: str) -> None:
    from fastapi.testclient import TestClient

    answer = TestClient(create_app(_cfg, store=_store)).request(
        method, path, headers={"Authorization": f"Bearer {_KEY}"}
    )
    assert answer.status_code == 405 and answer.headers["allow"] == allow
    assert answer.json()["error"]["code"] == "http_405"


def test_unknown_api_paths_get_the_apis_404_not_the_web_page() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(_cfg, store=_store))
    assert client.get("/v1/nothing-here").json()["error"]["code"] == "http_404"
    assert client.get("/").status_code == 200  # the web page is still at "/"


def test_findings_are_refused_naming_the_field() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(_cfg, store=_store), headers={"Authorization": f"Bearer {_KEY}"})
    empty_name = (
        b'--b\r\nContent-Disposition: form-data; name=""\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na\r\n--b--\r\n'
    )
    answer = client.post("/v1/videos", content=empty_name, headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == ""
    assert "empty name" in answer.json()["error"]["message"]
    for body in ({"prompt": "a", "seed": True}, {"prompt": "a", "guidance": "2"}, {"prompt": "a", "seconds": True}):
        refused = client.post("/v1/videos", json=body)  # schema-violating types are refused, not coerced
        assert refused.status_code == 400 and refused.json()["error"]["param"] == next(
            k for k in body if k != "prompt"
        )
    board = client.post("/v1/storyboards", json={"scenes": [{"prompt": "a", "duration": "2"}]})
    assert board.status_code == 400 and board.json()["error"]["param"] == "scenes[0].duration"
