"""The HTTP API's shapes: the OpenAI-style video object, lists, errors, models. They make ``/openapi.json``.

The video object keeps OpenAI's field names and types (``id``, ``object: "video"``, ``status``, integer
``progress``, unix-second ``created_at``/``completed_at``/``expires_at``, ``error``, ``model``, ``prompt``,
``seconds`` as a string, ``size`` as "WxH"), so the official ``openai`` SDK reads it unchanged, and adds Kinema's
own fields (``backend``, ``stage``, ``attempts``, ``seed``, ``recipe``, ``cost``, ``metadata``, ``track_id``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from ..request import MAX_KEYFRAMES, MAX_REFERENCES
from .store import Job

__all__ = [
    "VideoObject",
    "VideoList",
    "VideoDeleted",
    "ErrorBody",
    "ErrorResponse",
    "ModelObject",
    "ModelList",
    "Health",
    "Usage",
    "UsageBudget",
    "UsageCost",
    "CreateVideoBody",
    "EditVideoBody",
    "VideoReference",
    "KeyframeReference",
    "CharacterReference",
    "CharacterObject",
    "CharacterDeleted",
    "CreateCharacterBody",
    "MAX_CHARACTERS",
    "video_object",
    "STATUSES",
    "TEXT_SCHEMA",
    "PROMPT_SCHEMA",
]

#: what the engine accepts as text (kinema.request): no C0/C1 control characters but tab and newline. Declared in
#: /openapi.json only; the engine's own check answers (its message says where the character is)
TEXT_SCHEMA: dict[str, Any] = {"pattern": "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]*$"}
#: a prompt: such text, and not blank
_TEXT_CHAR = "[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]"
PROMPT_SCHEMA: dict[str, Any] = {"pattern": f"^{_TEXT_CHAR}*[^\\x00-\\x20\\x7f-\\xa0\\s]{_TEXT_CHAR}*$"}

STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
Status = Literal["queued", "in_progress", "completed", "failed", "cancelled"]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorBody


class VideoError(BaseModel):
    code: str
    message: str
    param: str | None = None
    type: str | None = None


class VideoObject(BaseModel):
    """A video job, in OpenAI's shape plus Kinema's fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["video"] = "video"
    status: Status
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoError | None = None
    model: str
    prompt: str | None = None
    seconds: str
    size: str
    remixed_from_video_id: str | None = None
    kind: str = "video"
    backend: str
    stage: str | None = None
    step: int | None = Field(default=None, description="While in progress: the current step of the stage")
    total_steps: int | None = Field(default=None, description="While in progress: the stage's number of steps")
    eta_seconds: float | None = Field(default=None, description="While in progress: estimated seconds left")
    scene: int | None = Field(default=None, description="Storyboards in progress: the scene being made (1-based)")
    scenes: int | None = Field(default=None, description="Storyboards: the number of scenes")
    attempts: int = 0
    seed: int | None = None
    recipe: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    track_id: str | None = None
    webhook_url: str | None = None
    #: seconds per phase of the finished job (prepare, generate, save, total...), as the engine measured them
    timings: dict[str, float] | None = None
    #: a storyboard job's title and scenes (prompt, duration, transition, continuity); None for a single video
    storyboard: dict[str, Any] | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ModelObject(BaseModel):
    """A backend (``id`` = its name) or one of its models (``id`` = "backend/model"), with what it accepts."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kinema"
    backend: str
    model: str | None = None
    description: str = ""
    usable: bool
    reason: str | None = None
    default: bool = False
    capabilities: dict[str, Any] | None = None
    job_kinds: list[str] = Field(default_factory=lambda: ["video"])


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    queued: int
    workers: int


class UsageCost(BaseModel):
    amount: float
    estimated: bool = Field(description="true when part of a USD total is Kinema's estimate from list prices")


class UsageBudget(BaseModel):
    amount: float
    currency: Literal["USD"]
    spent: float
    remaining: float


class Usage(BaseModel):
    object: Literal["usage"] = "usage"
    key_id: str
    since: float | None = Field(description="unix seconds; null: since the key was made")
    jobs: dict[str, int] = Field(description="total, and a count per status")
    seconds: float = Field(description="seconds of video of the completed jobs")
    cost: dict[str, UsageCost] = Field(
        description="per unit the backends report: usd, credits, units, predict_time..."
    )
    estimated: bool
    budget: UsageBudget | None = None


class ImageReference(BaseModel):
    image_url: str | None = Field(default=None, max_length=2_000_000, description="http(s) URL or data: URL")
    file_id: str | None = Field(default=None, max_length=200)


class KeyframeReference(BaseModel):
    """A timed keyframe: the image the clip shows ``time`` seconds from its start (the request's ``keyframes``)."""

    model_config = ConfigDict(extra="forbid")

    time: StrictFloat = Field(ge=0, le=600, description="seconds from the clip's start (0 up to its length)")
    image: ImageReference | str | None = Field(
        default=None,
        description="the image, as input_reference takes it: a URL or {image_url} in JSON; left out in a multipart "
        "form, whose keyframes files give the images in order",
    )


class CharacterReference(BaseModel):
    """A character made with ``POST /v1/videos/characters``, by id (as LiteLLM passes it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)


class VideoReference(BaseModel):
    """A completed video of the same API key, by id (the edit and extension routes' ``video``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)


#: characters one job may name (each gives up to 3 reference frames; the backend's max_references is the real limit)
MAX_CHARACTERS = 4


class CreateVideoBody(BaseModel):
    """The fields of ``POST /v1/videos`` (JSON, or the same names as multipart form fields)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=5000, json_schema_extra=PROMPT_SCHEMA)
    model: str | None = Field(default=None, max_length=200, description="a backend name or 'backend/model'")
    # strict numbers: the schema says "number", so true or "4" are refused, not coerced (a form's text is converted
    # before validation)
    seconds: StrictStr | StrictFloat | None = Field(default=None, description="clip length in seconds: '4' or 4")
    size: str | None = Field(default=None, max_length=16, description="WIDTHxHEIGHT, e.g. '128x128'")
    input_reference: ImageReference | str | None = Field(
        default=None, description="image-to-video: an image URL (JSON) or an uploaded file (multipart)"
    )
    image_url: str | None = Field(default=None, max_length=2_000_000)
    backend: str | None = Field(default=None, max_length=100)
    negative_prompt: str | None = Field(default=None, max_length=5000, json_schema_extra=TEXT_SCHEMA)
    seed: StrictInt | None = Field(default=None, ge=-1, le=2**32 - 1)
    num_frames: StrictInt | None = Field(default=None, ge=1, le=10_000)
    fps: StrictFloat | None = Field(default=None, ge=1, le=240)
    steps: StrictInt | None = Field(default=None, ge=1, le=1000)
    guidance: StrictFloat | None = Field(default=None, ge=0, le=100)
    webhook_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None
    track_id: str | None = Field(default=None, max_length=200)
    strength: StrictFloat | None = Field(
        default=None, ge=0, le=1, description="an edit's strength: 0 keeps the source clip, 1 ignores it (edits only)"
    )
    last_image: ImageReference | str | None = Field(
        default=None, description="keyframes: the image the clip ends on, as input_reference takes it"
    )
    references: list[ImageReference | str] | None = Field(
        default=None, max_length=MAX_REFERENCES, description="reference images (URLs, or files in a multipart form)"
    )
    keyframes: list[KeyframeReference] | None = Field(
        default=None,
        max_length=MAX_KEYFRAMES,
        description="images at given times, increasing (timed keyframes; "
        "a multipart form gives them as keyframes files with one keyframe_times field each)",
    )
    characters: list[CharacterReference] | None = Field(
        default=None, max_length=MAX_CHARACTERS, description="characters made with POST /v1/videos/characters"
    )


class EditVideoBody(CreateVideoBody):
    """The fields of ``POST /v1/videos/edits`` and ``/v1/videos/extensions``: a create body and the source clip,
    ``video``: ``{"id": ...}`` (JSON, or the form field ``video[id]``) or an uploaded file (multipart)."""

    video: VideoReference | None = None


class CreateCharacterBody(BaseModel):
    """The text fields of ``POST /v1/videos/characters`` (multipart, with the clip as the file ``video``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, json_schema_extra=PROMPT_SCHEMA)


class CharacterObject(BaseModel):
    """A character: a named reference clip of one API key."""

    id: str
    object: Literal["character"] = "character"
    name: str
    created_at: int


class CharacterDeleted(BaseModel):
    id: str
    object: Literal["character.deleted"] = "character.deleted"
    deleted: bool = True


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def _step_fields(job: Job) -> dict[str, Any]:
    """Step, total, ETA (and a storyboard's scene) of a running job; None once it has stopped running."""
    d = (job.progress_detail or {}) if job.status == "in_progress" else {}
    return {
        "step": d.get("step"),
        "total_steps": d.get("total"),
        "eta_seconds": d.get("eta_seconds"),
        "scene": d.get("scene"),
        "scenes": d.get("scenes"),
    }


def video_object(job: Job) -> dict[str, Any]:
    """The API's view of a job (never the owner, lease or file paths)."""
    s = job.summary
    result = job.result or {}
    error = job.error if job.status in ("failed", "cancelled") else None
    return {
        "id": job.id,
        "object": "video",
        "status": job.status,
        "progress": int(job.progress),
        "created_at": int(job.created_at),
        "completed_at": _ts(job.completed_at),
        "expires_at": _ts(job.expires_at),
        "error": error,
        "model": s.get("model") or s.get("backend") or "builtin",
        "prompt": s.get("prompt"),
        "seconds": s.get("seconds") or "0",
        "size": s.get("size") or "0x0",
        "remixed_from_video_id": s.get("remixed_from_video_id"),
        "kind": job.kind,
        "backend": s.get("backend") or "builtin",
        "stage": job.stage,
        **_step_fields(job),
        "attempts": job.attempts,
        "seed": result.get("seed", s.get("seed")),
        "recipe": result.get("recipe"),
        "cost": result.get("cost"),
        "metadata": job.metadata,
        "track_id": s.get("track_id"),
        "webhook_url": job.webhook_url,
        "timings": result.get("timings"),
        "storyboard": s.get("storyboard"),
    }
