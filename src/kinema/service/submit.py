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
import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest, KinemaError
from ..planner import Plan, backend_for, plan
from ..request import MAX_KEYFRAMES, MAX_REFERENCES, VideoRequest
from ..vocabulary import rename_field, request_fields, spoken_field
from .admission import admit, limits, refusal
from .characters import FRAMES_PER_CHARACTER, Character, character_frames, load_character
from .errors import ApiError, validate_body
from .forms import open_form, put_field, read_upload
from .jsonio import json_response, loads_limited, parse_json_object
from .modelref import check_model_ref
from .safefetch import URLRefused
from .schemas import CreateVideoBody, EditVideoBody, ImageReference, video_object
from .security import check_image
from .store import AdmissionRefused
from .usage import check_budget

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .state import ServiceState
    from .store import Job

__all__ = [
    "CREATE",
    "CREATE_BODY_SCHEMA",
    "EDIT_BODY_SCHEMA",
    "BODY_MODELS",
    "Operation",
    "Source",
    "Uploads",
    "create_response",
    "read_create_body",
    "new_job_id",
    "model_param",
]

#: the body fields that become request fields (their HTTP names; :func:`request_fields` translates them)
_REQUEST_FIELDS = ("prompt", "negative_prompt", "seed", "num_frames", "fps", "steps", "guidance", "seconds", "size")
#: request fields the HTTP API calls otherwise, beyond the shared vocabulary's aliases
_API_NAMES = {"image": "input_reference"}
_INT_FIELDS = ("seed", "num_frames", "steps")
_FLOAT_FIELDS = ("fps", "guidance", "strength")

#: the multipart fields of the create routes, for /openapi.json
_FORM_FIELDS: dict[str, Any] = {
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
    "strength": {"type": "number", "minimum": 0, "maximum": 1, "description": "edits only"},
    "last_image": {"type": "string", "format": "binary", "description": "keyframes: the last frame (or a URL)"},
    "references": {
        "type": "array",
        "maxItems": MAX_REFERENCES,
        "items": {"type": "string", "format": "binary"},
        "description": "reference images (files, or URLs as text fields)",
    },
    "characters": {"type": "string", "description": 'a JSON array of {"id": ...}; or the fields characters[][id]'},
    "keyframes": {
        "type": "array",
        "maxItems": MAX_KEYFRAMES,
        "items": {"type": "string", "format": "binary"},
        "description": "timed keyframes' images (files, or URLs as text fields), in time order",
    },
    "keyframe_times": {
        "type": "array",
        "maxItems": MAX_KEYFRAMES,
        "items": {"type": "number", "minimum": 0, "maximum": 600},
        "description": "seconds from the clip's start: one per keyframes image, in the same order",
    },
}


def _body_schema(model: str, form: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}},
            "multipart/form-data": {"schema": {"type": "object", "required": required, "properties": form}},
        },
    }


#: the request bodies this module reads raw, for /openapi.json
BODY_MODELS: tuple[type[BaseModel], ...] = (CreateVideoBody, EditVideoBody)
#: the create route's body in /openapi.json: JSON, or the same fields as a multipart form with image files
CREATE_BODY_SCHEMA = _body_schema("CreateVideoBody", _FORM_FIELDS, ["prompt"])
#: the edit and extension routes' body: the create body and ``video`` (a file, or ``video[id]`` in a form)
EDIT_BODY_SCHEMA = _body_schema(
    "EditVideoBody",
    {
        **_FORM_FIELDS,
        "video": {"type": "string", "format": "binary", "description": "the clip (or video[id]: a completed video)"},
        "video[id]": {"type": "string", "maxLength": 100, "description": "the id of a completed video of this key"},
    },
    ["prompt"],
)


def new_job_id() -> str:
    return "video_" + secrets.token_hex(12)


# -- what a submit is made of ---------------------------------------------------------------------------------------
@dataclass
class Uploads:
    """The files of a multipart create body, by field (images as uploaded; checked and re-encoded at submit)."""

    input_reference: bytes | None = None
    last_image: bytes | None = None
    references: list[bytes] = field(default_factory=list)
    #: timed keyframes' image files, in the order the form gave them
    keyframes: list[bytes] = field(default_factory=list)
    #: the clip of an edit or extension
    video: bytes | None = None

    def digest(self, h: Any) -> None:
        """Feed the files into the hash ``h`` (the idempotency fingerprint)."""
        if self.input_reference is not None:  # as before there were other files: fingerprints stay the same
            h.update(b"\0file\0" + hashlib.sha256(self.input_reference).digest())
        for name, data in (("last_image", self.last_image), ("video", self.video)):
            if data is not None:
                h.update(f"\0{name}\0".encode() + hashlib.sha256(data).digest())
        for data in self.references:
            h.update(b"\0references\0" + hashlib.sha256(data).digest())
        for data in self.keyframes:
            h.update(b"\0keyframes\0" + hashlib.sha256(data).digest())


@dataclass
class Source:
    """The clip a job edits or extends, already copied into the inputs dir under the new job's id."""

    #: the request field it fills: "source_video" (an edit) or "video" (an extension)
    field: str
    #: the body field to blame for it: "video" (an upload), "video.id" or "video_id" (a remix's path)
    param: str
    path: Path
    num_frames: int
    #: the completed job it came from (given by id), else None
    from_id: str | None = None
    #: that job's backend and model: an edit by id runs there unless the client names a model
    backend: str | None = None
    model: str | None = None


#: makes a job's source: (state, owner, body, uploads, job id) -> the staged Source, or None (a plain create)
SourceMaker = Callable[["ServiceState", str, CreateVideoBody, Uploads, str], Source | None]


@dataclass(frozen=True)
class Operation:
    """What a create route makes: its body model and how it finds the clip to edit or extend (edits.py)."""

    body_model: type[CreateVideoBody] = CreateVideoBody
    source: SourceMaker | None = None
    #: names the route in the idempotency fingerprint ("remix:<id>"...), so one key cannot replay another route's
    #: answer; "" for POST /v1/videos (its fingerprints stay as they were)
    key: str = ""


CREATE = Operation()


@dataclass
class _Inputs:
    """A job's inputs besides the prompt, as the body gave them (nothing fetched or written yet)."""

    image_url: str | None = None
    last_url: str | None = None
    reference_urls: list[str] = field(default_factory=list)
    #: timed keyframes: (seconds, the image's URL, or None for the form's next keyframes file)
    keyframes: list[tuple[float, str | None]] = field(default_factory=list)
    characters: list[Character] = field(default_factory=list)
    #: reference frames taken from each character's clip (decided at planning, from the backend's limit)
    frames_per_character: int = FRAMES_PER_CHARACTER
    source: Source | None = None
    #: files written for the job; removed when it is not stored
    written: list[Path] = field(default_factory=list)

    def has_image(self, uploads: Uploads) -> bool:
        return uploads.input_reference is not None or self.image_url is not None

    def has_last(self, uploads: Uploads) -> bool:
        return uploads.last_image is not None or self.last_url is not None

    def reference_count(self, uploads: Uploads) -> int:
        """The reference images the client sent (files and URLs), characters' frames not counted."""
        return len(uploads.references) + len(self.reference_urls)

    def discard(self) -> None:
        for path in self.written:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self.written.clear()


def _image_url(value: ImageReference | str | None, param: str) -> str | None:
    """A JSON image field's URL (``"https://..."``, a data URL, or ``{"image_url": ...}``)."""
    if value is None or isinstance(value, str):
        return value
    if value.file_id:
        raise ApiError(400, f"{param}.file_id: file ids are not supported; upload the image", param=f"{param}.file_id")
    return value.image_url


def _inputs(state: ServiceState, owner: str, body: CreateVideoBody, uploads: Uploads) -> _Inputs:
    """The body's image URLs and characters, checked for what needs no fetching."""
    inputs = _Inputs()
    inputs.image_url = body.image_url
    if isinstance(body.input_reference, str):
        inputs.image_url = inputs.image_url or body.input_reference
    elif body.input_reference is not None:
        if body.input_reference.file_id:
            raise ApiError(
                400,
                "input_reference.file_id: file ids are not supported; upload the image",
                param="input_reference.file_id",
            )
        inputs.image_url = inputs.image_url or body.input_reference.image_url
    inputs.last_url = _image_url(body.last_image, "last_image")
    if uploads.last_image is not None and inputs.last_url is not None:
        raise ApiError(400, "last_image: given as a file and as a URL; give one", param="last_image")
    for i, ref in enumerate(body.references or []):
        url = _image_url(ref, f"references[{len(uploads.references) + i}]")
        if url is None:
            raise ApiError(
                400,
                f"references[{len(uploads.references) + i}]: give an image URL",
                param=f"references[{len(uploads.references) + i}]",
            )
        inputs.reference_urls.append(url)
    for i, keyframe in enumerate(body.keyframes or []):
        inputs.keyframes.append((keyframe.time, _image_url(keyframe.image, f"keyframes[{i}].image")))
    without = [i for i, (_, url) in enumerate(inputs.keyframes) if url is None]
    if len(without) != len(uploads.keyframes):  # a JSON body has no files: each keyframe needs its URL
        at = without[len(uploads.keyframes)] if len(without) > len(uploads.keyframes) else None
        if at is not None and not uploads.keyframes:
            raise ApiError(400, f"keyframes[{at}].image: give an image URL", param=f"keyframes[{at}].image")
        raise ApiError(
            400,
            f"keyframe_times: {len(without)} keyframes take a file, and {len(uploads.keyframes)} "
            "keyframes files were sent; give one time per image",
            param="keyframe_times",
        )
    if inputs.reference_count(uploads) > MAX_REFERENCES:
        raise ApiError(
            400,
            f"references: {inputs.reference_count(uploads)} images; at most {MAX_REFERENCES} are "
            "allowed (fewer by most backends)",
            param="references",
        )
    seen: set[str] = set()
    for i, character in enumerate(body.characters or []):
        if character.id in seen:
            raise ApiError(400, f"characters[{i}].id: {character.id!r} is named twice", param=f"characters[{i}].id")
        seen.add(character.id)
        inputs.characters.append(load_character(state, owner, character.id, f"characters[{i}].id"))
    return inputs


# -- planning -------------------------------------------------------------------------------------------------------
def _probe_image() -> Any:
    import numpy as np

    return np.zeros((8, 8, 3), dtype=np.uint8)


def _frames_per_character(request: VideoRequest, characters: int, references: int) -> int:
    """Reference frames per character: up to :data:`FRAMES_PER_CHARACTER`, so that the client's own references and
    every character fit the backend's ``max_references`` (at least 1: a backend without references refuses anyway,
    naming the backends that take them)."""
    try:
        backend, resolved = backend_for(request)
        default_model = getattr(backend, "default_model", None)
        caps = backend.capabilities(resolved.model or (default_model() if default_model else None))
    except Exception:  # an unknown backend or model: planning refuses it, naming the field
        return FRAMES_PER_CHARACTER
    room = max(0, caps.max_references - references)
    return max(1, min(FRAMES_PER_CHARACTER, room // characters))


def _plan(body: CreateVideoBody, inputs: _Inputs, uploads: Uploads) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine request (JSON-safe; the images are filled in later) and the summary shown in the video object."""
    req: dict[str, Any] = {**request_fields({name: getattr(body, name) for name in _REQUEST_FIELDS}), "format": "mp4"}
    if body.num_frames is not None:  # an exact frame count wins over OpenAI's seconds (a client may send both)
        req.pop("duration", None)
    source = inputs.source
    backend, model = body.backend, body.model
    if source is not None and source.from_id is not None and backend is None and model is None:
        backend, model = source.backend, source.model  # an edit by id runs where the source was made
    implicit_frames = False
    if source is not None:
        req[source.field] = str(source.path)
        if source.field == "source_video" and body.num_frames is None and body.seconds is None:
            req["num_frames"], implicit_frames = source.num_frames, True  # an edit is as long as its source
    if body.strength is not None:
        req["strength"] = body.strength
    probe = dict(req, backend=backend, model=model)
    if inputs.has_image(uploads):
        probe["image"] = _probe_image()
    if inputs.has_last(uploads):
        probe["last_image"] = _probe_image()
    if inputs.keyframes:
        probe["keyframes"] = [{"time": time, "image": _probe_image()} for time, _ in inputs.keyframes]
    references = inputs.reference_count(uploads)
    if inputs.characters:
        inputs.frames_per_character = _frames_per_character(
            VideoRequest(prompt=body.prompt, backend=backend, model=model), len(inputs.characters), references
        )
        references += len(inputs.characters) * inputs.frames_per_character
    if references:
        probe["references"] = [_probe_image() for _ in range(references)]
    names = dict(_API_NAMES)
    if source is not None:
        names[source.field] = source.param
    if inputs.characters and not inputs.reference_count(uploads):
        names["references"] = "characters"
    try:
        # check against the backend now, so a bad job is refused at submit time, not minutes later
        the_plan = plan(VideoRequest(**probe), seed=0)
    except InvalidRequest as exc:
        if not (implicit_frames and source is not None and exc.field == "num_frames"):
            raise rename_field(
                exc, lambda name: names.get(name) or spoken_field(name, CreateVideoBody.model_fields)
            ) from None
        # the source's length is not one the backend makes: its own length then, if that covers the whole source
        # (a short clip is padded by the backend, as the built-in one holds its last frame); else the source is too
        # long for the backend, which is the client's to decide (edit its start, or another backend)
        req.pop("num_frames")
        probe.pop("num_frames")
        try:
            retry: Plan | None = plan(VideoRequest(**probe), seed=0)
        except InvalidRequest:
            retry = None
        if retry is None or retry.params.num_frames < source.num_frames:
            detail = exc.message[len("num_frames: ") :] if exc.message.startswith("num_frames: ") else exc.message
            raise InvalidRequest(
                source.param,
                f"the source clip has {source.num_frames} frames: {detail}; give "
                "num_frames (or seconds) to edit only its start",
                value=source.num_frames,
                allowed=exc.allowed,
            ) from None
        the_plan = retry
    request, params = the_plan.request, the_plan.params
    req.update({k: v for k, v in (("backend", request.backend), ("model", request.model)) if v is not None})
    summary = {
        "prompt": request.prompt,
        "backend": the_plan.backend.name,
        "model": model or the_plan.backend.name,
        "seconds": f"{params.duration:g}",
        "size": f"{params.width}x{params.height}",
        "seed": request.seed,
        "track_id": body.track_id,
        "mode": params.mode,
    }
    if source is not None and source.from_id is not None:
        summary["remixed_from_video_id"] = source.from_id
    return req, summary


def _api_field(field: str) -> str:
    """The HTTP API's name for a request field: ``duration`` -> ``seconds``, ``width`` -> ``size``,
    ``num_inference_steps`` -> ``steps``, ``image`` -> ``input_reference`` (only the aliases the API speaks)."""
    return _API_NAMES.get(field) or spoken_field(field, CreateVideoBody.model_fields)


def model_param(model: str | None, backend: str | None) -> str:
    """The body field that chose the backend, to blame when it is refused: ``backend`` when the client named only
    that, else ``model`` (a model reference picks its backend)."""
    return "backend" if backend is not None and model is None else "model"


def _prepare(
    state: ServiceState, body: CreateVideoBody, inputs: _Inputs | None = None, uploads: Uploads | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan the job and check its webhook URL, turning what is wrong into a 400 that names the field sent."""
    check_model_ref(body.model, body.backend, state.config.model_dir)
    try:
        req, summary = _plan(body, inputs or _Inputs(), uploads or Uploads())
        if body.webhook_url:
            state.fetcher.check_url(body.webhook_url, field="webhook_url")
    except URLRefused as exc:
        raise ApiError.from_error(exc) from None
    except InvalidRequest as exc:
        raise ApiError.from_error(rename_field(exc, _api_field)) from None
    except KinemaError as exc:  # the backend cannot run here (a key or an extra missing), or refuses the model
        raise ApiError.from_error(exc, param=model_param(body.model, body.backend)) from None
    from ..backends import backend_names

    key = summary["backend"] if inputs is not None and inputs.source is not None else _backend_key(body)
    if key not in state.warm_backends and (key == "" or key in backend_names()):
        state.warm_backends.add(key)  # a bare model id is resolved by asking every backend: never inline
    return req, summary


#: body fields that take the slow path: they fetch, decode or write files, or are refused with a message of their own
_SLOW_FIELDS = (
    "input_reference",
    "image_url",
    "webhook_url",
    "strength",
    "last_image",
    "references",
    "characters",
    "keyframes",
)


def _may_block(state: ServiceState, body: CreateVideoBody) -> bool:
    if any(getattr(body, name) for name in _SLOW_FIELDS) or body.strength is not None:
        return True
    return _backend_key(body) not in state.warm_backends


def _backend_key(body: CreateVideoBody) -> str:
    return body.backend or (body.model or "").partition("/")[0]


# -- the submit itself ----------------------------------------------------------------------------------------------
def _fingerprint(fields: dict[str, Any], uploads: Uploads | None, route: str = "") -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    if route:
        h.update(b"\0route\0" + route.encode())
    if uploads is not None:
        uploads.digest(h)
    return h.hexdigest()


async def create_response(
    state: ServiceState,
    owner: str,
    fields: dict[str, Any],
    uploads: Uploads | None,
    idem: str | None,
    operation: Operation = CREATE,
) -> Response:
    """A create route once the body is read: ``POST /v1/videos`` (``operation`` :data:`CREATE`), and the edit,
    extension and remix routes of :mod:`kinema.service.edits` (their ``operation`` finds the source clip); the
    Idempotency-Key, budget, admission, webhook and metadata rules are the same for all.

    A plain ``POST /v1/videos`` job (no file, URL, edit field, webhook or idempotency key, a backend already planned
    once) is checked on the event loop, its row committed by the store's group-commit writer, and answered after
    that commit, with no thread hop; anything that may block (fetching or decoding an input, resolving a webhook
    host, loading a backend, several idempotency transactions) runs in the thread pool.

    Args:
        state: the app's state.
        owner: the caller's key id.
        fields: the body's fields (JSON, or a form's text fields converted by :func:`read_create_body`).
        uploads: the form's files, if any.
        idem: the Idempotency-Key header, if any.
        operation: what the route makes.
    """
    body = validate_body(operation.body_model, fields)
    if operation is CREATE and uploads is None and idem is None and not _may_block(state, body):
        req, summary = _prepare(state, body)
        check_budget(state, owner, summary["backend"])
        admit(state, owner)
        job_id, metadata = new_job_id(), dict(body.metadata or {})
        config = state.config
        try:
            job = await asyncio.wrap_future(
                state.store.submit_job_future(
                    owner=owner,
                    request=req,
                    summary=summary,
                    max_attempts=config.max_attempts,
                    webhook_url=body.webhook_url,
                    metadata=metadata,
                    job_id=job_id,
                    limits=limits(config),
                )
            )
        except AdmissionRefused as exc:
            raise refusal(exc) from None
        state.admission.accepted(owner)
        state.pool.notify()
        return json_response(video_object(job))
    return await run_in_threadpool(_create, state, owner, fields, uploads, idem, operation)


def _create(
    state: ServiceState,
    owner: str,
    fields: dict[str, Any],
    uploads: Uploads | None,
    idem: str | None,
    operation: Operation = CREATE,
) -> Response:
    config, store = state.config, state.store
    body = validate_body(operation.body_model, fields)
    files = uploads or Uploads()
    inputs = _inputs(state, owner, body, files)
    job_id = new_job_id()
    stored = False
    try:
        if operation.source is not None:
            inputs.source = operation.source(state, owner, body, files, job_id)
            if inputs.source is not None:
                inputs.written.append(inputs.source.path)
        if body.strength is not None and (inputs.source is None or inputs.source.field != "source_video"):
            raise ApiError(
                400,
                "strength: only applies to an edit (POST /v1/videos/edits or "
                "/v1/videos/{video_id}/remix), where it says how far the result may go from the "
                "source clip",
                param="strength",
            )
        req, summary = _prepare(state, body, inputs, files)

        if idem is not None:
            if not 1 <= len(idem) <= 255:
                raise ApiError(400, "Idempotency-Key: must be 1 to 255 characters", param="Idempotency-Key")
            found = store.idempotency_begin(
                owner, idem, _fingerprint(fields, uploads, operation.key), config.idempotency_ttl_hours * 3600
            )
            if found.state == "mismatch":
                raise ApiError(
                    422,
                    "Idempotency-Key was already used with a different request body",
                    code="idempotency_key_reused",
                    param="Idempotency-Key",
                )
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
                return Response(
                    found.body,
                    status_code=found.status,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
        try:
            response = _execute(state, owner, body, req, summary, files, inputs, idem, job_id)
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
        stored = True
    finally:
        if not stored:  # refused, replayed or failed: the job these files were for was never stored
            inputs.discard()
    state.pool.notify()
    return response


def _write_png(state: ServiceState, inputs: _Inputs, name: str, data: bytes, param: str) -> str:
    """Check an image (as input_reference is checked) and write it, re-encoded, into the inputs dir."""
    config = state.config
    try:
        png = check_image(data, max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes, field=param)
    except InvalidRequest as exc:
        raise ApiError.from_error(exc, 422, code="invalid_image", param=param) from None
    path = config.inputs_dir / name
    tmp = path.with_suffix(".tmp")
    inputs.written.append(path)
    tmp.write_bytes(png)
    tmp.replace(path)
    return str(path)


def _execute(
    state: ServiceState,
    owner: str,
    body: CreateVideoBody,
    req: dict[str, Any],
    summary: dict[str, Any],
    uploads: Uploads,
    inputs: _Inputs,
    idem: str | None,
    job_id: str,
) -> Response:
    config, store = state.config, state.store
    check_budget(state, owner, summary["backend"])
    admit(state, owner)
    # fetched and decoded only now: nothing is downloaded for a job the budget or the queue refuses
    if inputs.has_image(uploads):
        data = uploads.input_reference
        if data is None:
            data = _fetch_image(state, str(inputs.image_url), "input_reference")
        req["image"] = _write_png(state, inputs, f"{job_id}.png", data, "input_reference")
    if inputs.has_last(uploads):
        data = uploads.last_image
        if data is None:
            data = _fetch_image(state, str(inputs.last_url), "last_image")
        req["last_image"] = _write_png(state, inputs, f"{job_id}.last.png", data, "last_image")
    files = iter(uploads.keyframes)
    keyframes: list[dict[str, Any]] = []
    for i, (time, url) in enumerate(inputs.keyframes):
        param = f"keyframes[{i}].image"
        data = next(files) if url is None else _fetch_image(state, url, param)
        keyframes.append({"time": time, "image": _write_png(state, inputs, f"{job_id}.kf{i}.png", data, param)})
    if keyframes:
        req["keyframes"] = keyframes
    references: list[str] = []
    for data in uploads.references:
        references.append(
            _write_png(state, inputs, f"{job_id}.ref{len(references)}.png", data, f"references[{len(references)}]")
        )
    for url in inputs.reference_urls:
        param = f"references[{len(references)}]"
        references.append(
            _write_png(state, inputs, f"{job_id}.ref{len(references)}.png", _fetch_image(state, url, param), param)
        )
    for i, character in enumerate(inputs.characters):
        for frame in character_frames(character, inputs.frames_per_character):
            references.append(
                _write_png(state, inputs, f"{job_id}.ref{len(references)}.png", frame, f"characters[{i}].id")
            )
    if references:
        req["references"] = references
    metadata = dict(body.metadata or {})

    def respond(job: Job) -> tuple[int, bytes]:
        return 200, json.dumps(video_object(job)).encode()

    try:
        job = store.submit_job(
            owner=owner,
            request=req,
            summary=summary,
            max_attempts=config.max_attempts,
            webhook_url=body.webhook_url,
            metadata=metadata,
            job_id=job_id,
            idempotency=(idem, respond) if idem else None,
            limits=limits(config),
        )
    except AdmissionRefused as exc:
        raise refusal(exc) from None
    state.admission.accepted(owner)
    status, payload = respond(job)
    return Response(payload, status_code=status, media_type="application/json")


def _fetch_image(state: ServiceState, url: str, param: str = "input_reference") -> bytes:
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError(400, f"{param}: a data URL must be base64 encoded", param=param)
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{param}: the data URL is not valid base64", param=param) from None
    try:
        return state.fetcher.get_bytes(url, max_bytes=state.config.max_image_bytes, field=param)
    except URLRefused as exc:
        raise ApiError.from_error(exc, param=param) from None


# -- reading the body -----------------------------------------------------------------------------------------------
_REFERENCE_NAME = re.compile(r"^references(\[\d*\])?$")
_KEYFRAME_NAME = re.compile(r"^keyframes(\[\d*\])?$")
_KEYFRAME_TIME_NAME = re.compile(r"^keyframe_times(\[\d*\])?$")
_CHARACTER_NAME = re.compile(r"^characters\[(\d*)\]\[id\]$")


async def read_create_body(
    request: Request, config: ServiceConfig, *, video: bool = False
) -> tuple[dict[str, Any], Uploads | None]:
    """A create body's fields (JSON, or a form with numbers as numbers and ``metadata`` as JSON) and the form's
    files, if any.

    A form's files: ``input_reference``, ``last_image``, ``references`` (also ``references[]`` or
    ``references[N]``, repeated), ``keyframes`` (the same) and, with ``video`` (the edit and extension routes),
    ``video``. Its text fields may also give ``video[id]`` (the form the official SDK's serializer makes of
    ``{"video": {"id": ...}}``), ``characters[][id]`` (the same for ``characters=[{"id": ...}]``), ``characters`` as
    JSON, image URLs as ``last_image``, ``references`` and ``keyframes``, and ``keyframe_times``: one number of
    seconds per ``keyframes`` part (file or URL), paired in order.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        return parse_json_object(await request.body()), None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await open_form(
            request, max_files=3 + MAX_REFERENCES + MAX_KEYFRAMES, max_fields=60 + 2 * MAX_KEYFRAMES
        )
        fields: dict[str, Any] = {}
        uploads = Uploads()
        urls: list[str] = []
        characters: list[dict[str, Any]] = []
        keyframe_parts: list[str | None] = []  # each keyframes part in order: its URL, or None for a file
        keyframe_times: list[str] = []
        for name, value in form.multi_items():
            if not isinstance(value, str):
                await _read_file(uploads, name, value, config, video)
                if _KEYFRAME_NAME.match(name):
                    keyframe_parts.append(None)
            elif _KEYFRAME_NAME.match(name):
                keyframe_parts.append(value)
            elif _KEYFRAME_TIME_NAME.match(name):
                keyframe_times.append(value)
            elif _REFERENCE_NAME.match(name):
                urls.append(value)
            elif _CHARACTER_NAME.match(name):
                characters.append({"id": value})
            elif name == "video[id]" and video:
                put_field(fields, "video", {"id": value})
            elif name == "video" and video:
                raise ApiError(
                    400,
                    'video: give the clip as a file, or a completed video\'s id as the field "video[id]"',
                    param="video",
                )
            else:
                put_field(fields, name, value)
        if urls:
            fields["references"] = urls
        if keyframe_parts or keyframe_times:
            fields["keyframes"] = _form_keyframes(keyframe_parts, keyframe_times)
        if characters:
            put_field(fields, "characters", characters)
        elif "characters" in fields:
            try:
                fields["characters"] = loads_limited(fields["characters"], "characters")
            except json.JSONDecodeError:
                raise ApiError(400, 'characters: must be a JSON array of {"id": ...}', param="characters") from None
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
        return fields, uploads
    raise ApiError(415, "send application/json or multipart/form-data", code="unsupported_media_type")


def _form_keyframes(parts: list[str | None], times: list[str]) -> list[dict[str, Any]]:
    """A form's timed keyframes as the JSON body gives them: ``keyframe_times[i]`` with the i-th ``keyframes`` part
    (a URL as ``image``; a file left out, to be taken from the form's files in order)."""
    if len(parts) != len(times):
        raise ApiError(
            400,
            f"keyframe_times: {len(times)} times for {len(parts)} keyframes images; give one time "
            "per image, in the same order",
            param="keyframe_times",
        )
    out: list[dict[str, Any]] = []
    for i, (part, text) in enumerate(zip(parts, times, strict=True)):
        try:
            seconds = float(text.strip())
        except ValueError:
            raise ApiError(
                400, f"keyframe_times[{i}]: must be a number of seconds, got {text!r}", param=f"keyframe_times[{i}]"
            ) from None
        out.append({"time": seconds} if part is None else {"time": seconds, "image": part})
    return out


async def _read_file(uploads: Uploads, name: str, value: Any, config: ServiceConfig, video: bool) -> None:
    """One file of a form, into ``uploads``; refused when the field takes no file or it is over its limit."""
    is_video = video and name == "video"
    limit = config.max_video_bytes if is_video else config.max_image_bytes
    param = "references" if _REFERENCE_NAME.match(name) else "keyframes" if _KEYFRAME_NAME.match(name) else name
    if not (is_video or name in ("input_reference", "last_image") or param in ("references", "keyframes")):
        files = "input_reference, last_image, references, keyframes" + (" and video" if video else "")
        raise ApiError(400, f"{name}: files are accepted only as {files}", param=name)
    if param not in ("references", "keyframes") and getattr(uploads, name) is not None:
        raise ApiError(400, f"{name}: given more than once", param=name)
    data = await read_upload(value, limit, param, "clip" if is_video else "image")
    if param in ("references", "keyframes"):
        getattr(uploads, param).append(data)
    else:
        setattr(uploads, name, data)
