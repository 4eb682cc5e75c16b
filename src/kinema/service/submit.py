"""Submitting a video job (``POST /v1/videos``): read the body, check it against the backend, admit it, store it.

The check is :func:`kinema.planner.plan`, the same as ``kinema generate`` and the library make, so a job is refused
at submit time, naming the field the client sent (``seconds``, ``size``, ``steps``...), rather than failing minutes
later in a worker. The HTTP names are translated by :func:`kinema.vocabulary.request_fields`, and a model reference
(``"builtin"``, ``"diffusers/Org/Repo"``, ``"wan2.1-t2v-1.3b"``) picks its backend as it does everywhere else.

:func:`create_response` is what both the FastAPI route and the JSON fast path (:mod:`kinema.service.fastpath`)
call once the body is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest, KinemaError
from ..planner import plan
from ..request import VideoRequest
from ..vocabulary import rename_field, request_fields, spoken_field
from .admission import admit, limits, refusal
from .errors import ApiError, validate_body
from .jsonio import json_response, loads_limited, parse_json_object
from .modelref import check_model_ref
from .safefetch import URLRefused
from .schemas import CreateVideoBody, video_object
from .security import RequestRefused, check_image
from .store import AdmissionRefused
from .usage import check_budget

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .state import ServiceState
    from .store import Job

__all__ = ["CREATE_BODY_SCHEMA", "BODY_MODELS", "create_response", "read_create_body", "new_job_id", "model_param"]

#: the body fields that become request fields (their HTTP names; :func:`request_fields` translates them)
_REQUEST_FIELDS = ("prompt", "negative_prompt", "seed", "num_frames", "fps", "steps", "guidance", "seconds", "size")
#: request fields the HTTP API calls otherwise, beyond the shared vocabulary's aliases
_API_NAMES = {"image": "input_reference"}
_INT_FIELDS = ("seed", "num_frames", "steps")
_FLOAT_FIELDS = ("fps", "guidance")

#: the request bodies this module reads raw, for /openapi.json
BODY_MODELS: tuple[type[BaseModel], ...] = (CreateVideoBody,)
#: the create route's body in /openapi.json: JSON, or the same fields as a multipart form with an image file
CREATE_BODY_SCHEMA = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/CreateVideoBody"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1, "maxLength": 5000},
                    "model": {"type": "string", "maxLength": 200},
                    "seconds": {"type": "string", "maxLength": 16},
                    "size": {"type": "string", "maxLength": 16},
                    "input_reference": {"type": "string", "format": "binary"},
                    "image_url": {"type": "string"},
                    "backend": {"type": "string", "maxLength": 100},
                    "negative_prompt": {"type": "string", "maxLength": 5000},
                    "seed": {"type": "integer", "minimum": -1, "maximum": 2**32 - 1},
                    "num_frames": {"type": "integer", "minimum": 1, "maximum": 10000},
                    "fps": {"type": "number", "minimum": 1, "maximum": 240},
                    "steps": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "guidance": {"type": "number", "minimum": 0, "maximum": 100},
                    "webhook_url": {"type": "string", "maxLength": 2048},
                    "metadata": {"type": "string", "description": "a JSON object"},
                    "track_id": {"type": "string", "maxLength": 200},
                },
            }
        },
    },
}


def new_job_id() -> str:
    return "video_" + secrets.token_hex(12)


# -- planning -------------------------------------------------------------------------------------------------------
def _plan(body: CreateVideoBody, has_image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine request (JSON-safe; the image is filled in later) and the summary shown in the video object."""
    req: dict[str, Any] = {**request_fields({name: getattr(body, name) for name in _REQUEST_FIELDS}), "format": "mp4"}
    if body.num_frames is not None:  # an exact frame count wins over OpenAI's seconds (a client may send both)
        req.pop("duration", None)
    probe = dict(req, backend=body.backend, model=body.model)
    if has_image:
        import numpy as np

        probe["image"] = np.zeros((8, 8, 3), dtype=np.uint8)
    # check against the backend now, so a bad job is refused at submit time, not minutes later
    the_plan = plan(VideoRequest(**probe), seed=0)
    request, params = the_plan.request, the_plan.params
    req.update({k: v for k, v in (("backend", request.backend), ("model", request.model)) if v is not None})
    summary = {
        "prompt": request.prompt, "backend": the_plan.backend.name, "model": body.model or the_plan.backend.name,
        "seconds": f"{params.duration:g}", "size": f"{params.width}x{params.height}",
        "seed": request.seed, "track_id": body.track_id, "mode": params.mode,
    }  # fmt: skip
    return req, summary


def _api_field(field: str) -> str:
    """The HTTP API's name for a request field: ``duration`` -> ``seconds``, ``width`` -> ``size``,
    ``num_inference_steps`` -> ``steps``, ``image`` -> ``input_reference`` (only the aliases the API speaks)."""
    return _API_NAMES.get(field) or spoken_field(field, CreateVideoBody.model_fields)


def model_param(model: str | None, backend: str | None) -> str:
    """The body field that chose the backend, to blame when it is refused: ``backend`` when the client named only
    that, else ``model`` (a model reference picks its backend)."""
    return "backend" if backend is not None and model is None else "model"


def _prepare(state: ServiceState, body: CreateVideoBody, has_image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan the job and check its webhook URL, turning what is wrong into a 400 that names the field sent."""
    check_model_ref(body.model, body.backend, state.config.model_dir)
    try:
        req, summary = _plan(body, has_image)
        if body.webhook_url:
            state.fetcher.check_url(body.webhook_url, field="webhook_url")
    except URLRefused as exc:
        raise ApiError.from_error(exc) from None
    except InvalidRequest as exc:
        raise ApiError.from_error(rename_field(exc, _api_field)) from None
    except KinemaError as exc:  # the backend cannot run here (a key or an extra missing), or refuses the model
        raise ApiError.from_error(exc, param=model_param(body.model, body.backend)) from None
    from ..backends import backend_names

    key = _backend_key(body)
    if key not in state.warm_backends and (key == "" or key in backend_names()):
        state.warm_backends.add(key)  # a bare model id is resolved by asking every backend: never inline
    return req, summary


def _may_block(state: ServiceState, body: CreateVideoBody) -> bool:
    if body.input_reference is not None or body.image_url is not None or body.webhook_url:
        return True
    return _backend_key(body) not in state.warm_backends


def _backend_key(body: CreateVideoBody) -> str:
    return body.backend or (body.model or "").partition("/")[0]


# -- the submit itself ----------------------------------------------------------------------------------------------
def _fingerprint(fields: dict[str, Any], upload: bytes | None) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    if upload is not None:
        h.update(b"\0file\0" + hashlib.sha256(upload).digest())
    return h.hexdigest()


async def create_response(
    state: ServiceState, owner: str, fields: dict[str, Any], upload: bytes | None, idem: str | None
) -> Response:
    """``POST /v1/videos`` once the body is read. A plain job (no image, webhook or idempotency key, a backend
    already planned once) is checked on the event loop, its row committed by the store's group-commit writer, and
    answered after that commit, with no thread hop; anything that may block (fetching an image, resolving a
    webhook host, loading a backend, several idempotency transactions) runs in the thread pool."""
    body = validate_body(CreateVideoBody, fields)
    if upload is None and idem is None and not _may_block(state, body):
        req, summary = _prepare(state, body, False)
        check_budget(state, owner, summary["backend"])
        admit(state, owner)
        job_id, metadata = new_job_id(), dict(body.metadata or {})
        config = state.config
        try:
            job = await asyncio.wrap_future(state.store.submit_job_future(
                owner=owner, request=req, summary=summary, max_attempts=config.max_attempts,
                webhook_url=body.webhook_url, metadata=metadata, job_id=job_id, limits=limits(config)))  # fmt: skip
        except AdmissionRefused as exc:
            raise refusal(exc) from None
        state.admission.accepted(owner)
        state.pool.notify()
        return json_response(video_object(job))
    return await run_in_threadpool(_create, state, owner, fields, upload, idem)


def _create(
    state: ServiceState, owner: str, fields: dict[str, Any], upload: bytes | None, idem: str | None
) -> Response:
    config, store = state.config, state.store
    body = validate_body(CreateVideoBody, fields)
    image_url = body.image_url
    if isinstance(body.input_reference, str):
        image_url = image_url or body.input_reference
    elif body.input_reference is not None:
        if body.input_reference.file_id:
            raise ApiError(400, "input_reference.file_id: file ids are not supported; upload the image",
                           param="input_reference.file_id")  # fmt: skip
        image_url = image_url or body.input_reference.image_url
    has_image = upload is not None or image_url is not None
    req, summary = _prepare(state, body, has_image)

    if idem is not None:
        if not 1 <= len(idem) <= 255:
            raise ApiError(400, "Idempotency-Key: must be 1 to 255 characters", param="Idempotency-Key")
        found = store.idempotency_begin(owner, idem, _fingerprint(fields, upload), config.idempotency_ttl_hours * 3600)
        if found.state == "mismatch":
            raise ApiError(422, "Idempotency-Key was already used with a different request body",
                           code="idempotency_key_reused", param="Idempotency-Key")  # fmt: skip
        if found.state == "in_flight":
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still being processed; retry later",
                code="idempotency_key_in_use",
                param="Idempotency-Key",
                # when the reservation can be taken over at the latest: a client that trusts it succeeds
                headers={"Retry-After": str(int(found.retry_after or 1))},
            )
        if found.state == "replay":
            assert found.status is not None and found.body is not None
            return Response(found.body, status_code=found.status, media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})  # fmt: skip
    try:
        response = _execute(state, owner, body, req, summary, upload, image_url, idem)
    except ApiError as exc:
        if idem is not None:
            if exc.status == 429:  # refused before it began: the client may retry with the same key
                store.idempotency_release(owner, idem)
            else:
                store.idempotency_finish(owner, idem, exc.status, bytes(exc.response().body))
        raise
    except Exception:
        if idem is not None:
            error = ApiError(500, "internal server error", code="server_error")
            store.idempotency_finish(owner, idem, 500, bytes(error.response().body))
        raise
    state.pool.notify()
    return response


def _execute(state: ServiceState, owner: str, body: CreateVideoBody, req: dict[str, Any], summary: dict[str, Any],
             upload: bytes | None, image_url: str | None, idem: str | None) -> Response:  # fmt: skip
    config, store = state.config, state.store
    check_budget(state, owner, summary["backend"])
    admit(state, owner)
    job_id = new_job_id()
    image_path: Path | None = None
    if upload is not None or image_url is not None:
        data = upload if upload is not None else _fetch_image(state, str(image_url))
        try:
            png = check_image(data, max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes)
        except InvalidRequest as exc:
            raise ApiError.from_error(exc, 422, code="invalid_image", param="input_reference") from None
        image_path = config.inputs_dir / f"{job_id}.png"
        tmp = image_path.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(image_path)
        req["image"] = str(image_path)
    metadata = dict(body.metadata or {})

    def respond(job: Job) -> tuple[int, bytes]:
        return 200, json.dumps(video_object(job)).encode()

    try:
        job = store.submit_job(owner=owner, request=req, summary=summary, max_attempts=config.max_attempts,
                               webhook_url=body.webhook_url, metadata=metadata, job_id=job_id,
                               idempotency=(idem, respond) if idem else None, limits=limits(config))  # fmt: skip
    except AdmissionRefused as exc:
        if image_path is not None:
            image_path.unlink(missing_ok=True)  # the job it was for was never stored
        raise refusal(exc) from None
    state.admission.accepted(owner)
    status, payload = respond(job)
    return Response(payload, status_code=status, media_type="application/json")


def _fetch_image(state: ServiceState, url: str) -> bytes:
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError(400, "input_reference: a data URL must be base64 encoded", param="input_reference")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "input_reference: the data URL is not valid base64", param="input_reference") from None
    try:
        return state.fetcher.get_bytes(url, max_bytes=state.config.max_image_bytes, field="input_reference")
    except URLRefused as exc:
        raise ApiError.from_error(exc, param="input_reference") from None


# -- reading the body -----------------------------------------------------------------------------------------------
async def read_create_body(request: Request, config: ServiceConfig) -> tuple[dict[str, Any], bytes | None]:
    """The create body's fields (JSON, or a form with numbers as numbers and ``metadata`` as JSON) and the uploaded
    image's bytes, if any."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        return parse_json_object(await request.body()), None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=40)
        except Exception as exc:
            if isinstance(exc, RequestRefused):  # BodyLimitMiddleware's: it answers 413 or 408 itself
                raise
            raise ApiError(400, f"the form could not be read ({type(exc).__name__})", code="invalid_form") from None
        fields: dict[str, Any] = {}
        upload: bytes | None = None
        for name, value in form.multi_items():
            if hasattr(value, "read"):
                if name != "input_reference":
                    raise ApiError(400, f"{name}: files are accepted only as input_reference", param=name)
                upload = await value.read(config.max_image_bytes + 1)
                if len(upload) > config.max_image_bytes:
                    raise ApiError(413, f"input_reference: the image is larger than {config.max_image_bytes} bytes",
                                   code="request_too_large", param="input_reference")  # fmt: skip
            elif name in fields:
                raise ApiError(400, f"{name}: given more than once", param=name)
            else:
                fields[name] = value
        for name in _INT_FIELDS + _FLOAT_FIELDS:
            if name in fields:
                text = str(fields[name]).strip()
                try:
                    fields[name] = int(text) if name in _INT_FIELDS else float(text)
                except ValueError:
                    kind = "a whole number" if name in _INT_FIELDS else "a number"
                    raise ApiError(400, f"{name}: must be {kind}, got {text!r}", param=name) from None
        if "metadata" in fields:
            try:
                fields["metadata"] = loads_limited(fields["metadata"], "metadata")
            except json.JSONDecodeError:
                raise ApiError(400, "metadata: must be a JSON object", param="metadata") from None
        return fields, upload
    raise ApiError(415, "send application/json or multipart/form-data", code="unsupported_media_type")
