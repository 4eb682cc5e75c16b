"""The prompt builder over HTTP: ``GET /v1/prompt-library`` and ``POST /v1/prompts``.

The web page offers the prompt builder's parts (subject, action, setting, style, camera, lighting, mood) and its
templates as helpers; these two routes give it the library and render a prompt with :class:`kinema.VideoPrompt`,
so the page and the library can never disagree about what a part means.

>>> body = PromptBody(subject="a red fox", camera="tracking", mood="serene")
>>> render(body)["prompt"]
'A red fox. Tracking shot, the camera follows the subject. Serene, calm mood.'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from .app import ServiceState

__all__ = ["PromptBody", "library", "render", "install_routes"]


class PromptBody(BaseModel):
    """Parts of a prompt; library names (``"dolly-in"``) expand to their phrase, other text is used as it is."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=500)
    action: str | None = Field(default=None, max_length=500)
    setting: str | None = Field(default=None, max_length=500)
    style: str | None = Field(default=None, max_length=500)
    camera: str | None = Field(default=None, max_length=500)
    lighting: str | None = Field(default=None, max_length=500)
    mood: str | None = Field(default=None, max_length=500)
    negative: str | None = Field(default=None, max_length=500)
    template: str | None = Field(default=None, max_length=40, description="cinematic, product, nature")


def library() -> dict[str, Any]:
    """The parts, the library of named camera moves, styles, lighting and moods, and the templates."""
    from ..prompts import LIBRARY, TEMPLATES

    return {"object": "prompt_library", "parts": ["subject", "action", "setting", "style", "camera", "lighting",
                                                  "mood", "negative"],
            "library": {kind: dict(names) for kind, names in LIBRARY.items()},
            "templates": {name: dict(parts) for name, parts in TEMPLATES.items()}}  # fmt: skip


def render(body: PromptBody) -> dict[str, Any]:
    """The rendered prompt and negative prompt; empty parts are left out, a template fills the parts not given."""
    from ..prompts import VideoPrompt, from_template

    parts = {k: v for k, v in body.model_dump(exclude={"template"}).items() if v is not None and (v.strip() or
             k == "subject")}  # fmt: skip
    prompt = from_template(body.template, **parts) if body.template else VideoPrompt(**parts)
    return {"object": "prompt", "prompt": prompt.render(), "negative_prompt": prompt.negative,
            "parts": prompt.model_dump(exclude_none=True)}  # fmt: skip


def install_routes(app: FastAPI, state: ServiceState) -> None:
    """Add the two routes to the service app (``create_app`` calls this)."""
    import json

    from .app import _ERRORS, _SECURED, ApiError, _authenticate, _json, _rate

    @app.get("/v1/prompt-library", responses=_ERRORS, summary="The prompt builder's parts and library",
             tags=["prompts"], openapi_extra=_SECURED)  # fmt: skip
    async def prompt_library(request: Request) -> Response:
        owner = _authenticate(state, request)
        _rate(state.read_limiter, owner)
        return _json(library())

    @app.post("/v1/prompts", responses=_ERRORS, summary="Render a prompt from its parts", tags=["prompts"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "$ref": "#/components/schemas/PromptBody"}}}}, **_SECURED})  # fmt: skip
    async def render_prompt(request: Request) -> Response:
        owner = _authenticate(state, request)
        _rate(state.read_limiter, owner)
        try:
            data = json.loads(await request.body())
            body = PromptBody(**data) if isinstance(data, dict) else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            raise ApiError(400, f"{param}: {first.get('msg', 'is invalid')}", code="invalid_request",
                           param=param) from None  # fmt: skip
        if body is None:
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        try:
            return _json(render(body))
        except InvalidRequest as exc:
            raise ApiError.invalid(exc) from None

    original = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("PromptBody", PromptBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
