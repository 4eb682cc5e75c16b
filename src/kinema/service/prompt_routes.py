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

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidRequest
from ..prompts import TEMPLATES
from .auth import SECURED, authenticate_request, check_rate
from .errors import ERROR_RESPONSES, ApiError, validate_body
from .jsonio import json_response, read_json_object
from .schemas import PROMPT_SCHEMA, TEXT_SCHEMA

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["PromptBody", "BODY_MODELS", "library", "render", "prompt_routes"]


class PromptBody(BaseModel):
    """Parts of a prompt; library names (``"dolly-in"``) expand to their phrase, other text is used as it is."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=500, json_schema_extra=PROMPT_SCHEMA)
    action: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    setting: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    style: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    camera: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    lighting: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    mood: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    negative: str | None = Field(default=None, max_length=500, json_schema_extra=TEXT_SCHEMA)
    # the schema lists the templates, so a client (and the fuzzer) knows the names before it asks
    template: str | None = Field(
        default=None, max_length=40, description=", ".join(TEMPLATES), json_schema_extra={"enum": [*TEMPLATES, None]}
    )


def library() -> dict[str, Any]:
    """The parts, the library of named camera moves, styles, lighting and moods, and the templates."""
    from ..prompts import LIBRARY, TEMPLATES

    return {
        "object": "prompt_library",
        "parts": ["subject", "action", "setting", "style", "camera", "lighting", "mood", "negative"],
        "library": {kind: dict(names) for kind, names in LIBRARY.items()},
        "templates": {name: dict(parts) for name, parts in TEMPLATES.items()},
    }


def render(body: PromptBody) -> dict[str, Any]:
    """The rendered prompt and negative prompt; empty parts are left out, a template fills the parts not given."""
    from ..prompts import VideoPrompt, from_template

    parts = {
        k: v
        for k, v in body.model_dump(exclude={"template"}).items()
        if v is not None and (v.strip() or k == "subject")
    }
    prompt = from_template(body.template, **parts) if body.template else VideoPrompt(**parts)
    return {
        "object": "prompt",
        "prompt": prompt.render(),
        "negative_prompt": prompt.negative,
        "parts": prompt.model_dump(exclude_none=True),
    }


#: the request bodies this module's routes read raw, for /openapi.json
BODY_MODELS: tuple[type[BaseModel], ...] = (PromptBody,)


def prompt_routes(state: ServiceState) -> APIRouter:
    """The two routes, bound to one app's state."""
    router = APIRouter(tags=["prompts"])

    @router.get(
        "/v1/prompt-library",
        responses=ERROR_RESPONSES,
        summary="The prompt builder's parts and library",
        openapi_extra=SECURED,
    )
    async def prompt_library(request: Request) -> Response:
        owner = authenticate_request(state, request)
        check_rate(state.read_limiter, owner)
        return json_response(library())

    @router.post(
        "/v1/prompts",
        responses=ERROR_RESPONSES,
        summary="Render a prompt from its parts",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PromptBody"}}},
            },
            **SECURED,
        },
    )
    async def render_prompt(request: Request) -> Response:
        owner = authenticate_request(state, request)
        check_rate(state.read_limiter, owner)
        body = validate_body(PromptBody, await read_json_object(request))
        try:
            return json_response(render(body))
        except InvalidRequest as exc:
            raise ApiError.from_error(exc) from None

    return router
