"""What the MCP server offers an assistant: each tool's name, description and input schema, and the checks of the
arguments that are the MCP server's own (``wait_seconds``, ``idempotency_key``, ``video_id``...).

The schemas are generated from Kinema's own models, so they cannot drift from what the engine accepts:
``generate_video`` from :class:`~kinema.VideoRequest`, ``render_storyboard`` from
:class:`~kinema.storyboard.Storyboard`, ``build_prompt`` from :class:`~kinema.prompts.VideoPrompt` and the
post-processing steps of ``enhance_video`` from :data:`~kinema.media.enhance.PostStep`. What the models do not
say (what a field is for, and how to write a prompt a video model follows) is added here.

>>> spec = TOOLS["generate_video"]
>>> spec.schema["required"], "num_inference_steps" in spec.schema["properties"]
(['prompt'], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest

__all__ = [
    "ToolSpec",
    "TOOLS",
    "PROMPT_ADVICE",
    "INSTRUCTIONS",
    "check_arguments",
    "wait_seconds_of",
    "REQUEST_ONLY",
    "MAX_WAIT_SECONDS",
    "DEFAULT_WAIT_SECONDS",
]

#: how long a tool call waits for its job by default: under the minute many assistants give a tool call
DEFAULT_WAIT_SECONDS = 50.0
MAX_WAIT_SECONDS = 600.0

PROMPT_ADVICE = (
    "Write the prompt as one shot: who or what, doing ONE clear action, where, then how it is filmed. "
    "Describe the motion (what moves, which way, how fast): a prompt that only describes a scene makes a still "
    "clip. Name the camera move (static, pan-left, tilt-up, dolly-in, zoom-out, tracking, orbit, aerial, handheld; "
    "build_prompt lists them all). Keep to one action per clip and chain shots with render_storyboard. Ask for a "
    "short duration (2 to 5 seconds): short clips come out best."
)

INSTRUCTIONS = (
    "Kinema turns text (and an image or an earlier clip) into short videos. generate_video starts a job and waits "
    "for it (progress comes as notifications); when it has not finished within wait_seconds it hands back the job "
    "id: call get_video with that id to keep waiting, never generate_video again (that pays twice). Finished "
    "videos are resources: kinema://videos/{id}/video.mp4, kinema://videos/{id}/thumbnail.png (look at it to "
    "check the result) and kinema://videos/{id}/recipe.json (everything needed to make it again). " + PROMPT_ADVICE
)

#: arguments of the job tools that are the MCP server's own, not part of the request
_WAIT = {
    "type": "number",
    "minimum": 0,
    "maximum": MAX_WAIT_SECONDS,
    "default": DEFAULT_WAIT_SECONDS,
    "description": "Seconds to wait for the job before handing back its id (0: return at once). Progress is sent "
    "as MCP progress notifications meanwhile. Continue with get_video.",
}
_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "Any unique text for this request. Retrying the call with the same key (after a timeout or a "
    "restart) returns the same job instead of making (and paying for) the video twice.",
}
REQUEST_ONLY = ("wait_seconds", "idempotency_key")

#: what each VideoRequest field is for, in words an assistant can act on (a test checks every field has one)
_REQUEST_FIELDS: dict[str, str] = {
    "prompt": "What the video shows, 1 to 5000 characters. " + PROMPT_ADVICE,
    "negative_prompt": "What the video must not show (e.g. 'blurry, watermark, text').",
    "image": "Image-to-video: a local file path or an http(s) URL of the first frame.",
    "video": "Extend a clip: the local file path of a video to continue (a finished video's 'file').",
    "num_frames": "Exact number of frames; give this or duration, not both. The backend decides which counts "
    "it accepts (the error says).",
    "duration": "Length in seconds (more than 0, at most 600). Short clips (2 to 5 s) come out best.",
    "fps": "Frames per second (1 to 240); the backend's default when left out.",
    "width": "Width in pixels (8 to 8192), with height; or use aspect_ratio/resolution.",
    "height": "Height in pixels (8 to 8192), with width.",
    "aspect_ratio": "Shape of the frame instead of width/height.",
    "resolution": "Short side preset instead of width/height.",
    "num_inference_steps": "Denoising steps (1 to 1000): fewer is faster and rougher.",
    "guidance_scale": "How strictly the model follows the prompt (0 to 100); the backend's default when left out.",
    "seed": "Random seed (0 to 4294967295) to make the same video again; -1 or left out for a random one.",
    "backend": "The engine: see list_backends for what can run here. Default: the built-in CPU model.",
    "model": "A model reference: a backend name, 'backend/model', or a model id one backend lists.",
    "options": "Backend-specific options (each backend checks its own).",
    "postprocess": "Steps applied after generation, in order: upscale, interpolate, fps, denoise, sharpen, "
    "loop, trim, audio.",
}
#: request fields an MCP job does not take: the job service always writes an MP4 (its outputs and thumbnails)
_REQUEST_EXCLUDED = ("format",)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    schema: dict[str, Any]
    read_only: bool = False
    #: the arguments the tool takes (the schema's properties)
    allowed: tuple[str, ...] = field(default=())


def _strip_titles(node: Any) -> Any:
    """pydantic's generated ``title`` keys repeat the field names; dropping them keeps the schemas short."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _hoist_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Move every nested ``$defs`` to the root: their ``$ref`` paths (``#/$defs/...``) point at the root."""
    defs: dict[str, Any] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            defs.update({k: walk(v) for k, v in node.get("$defs", {}).items()})
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    if defs:
        out["$defs"] = defs
    return out


def _steps_schema() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from ..media.enhance import OPS, PostStep

    schema: dict[str, Any] = _strip_titles(TypeAdapter(list[PostStep]).json_schema())
    schema["description"] = (
        "Post-processing steps, applied in order; each is {'op': ...} plus its parameters. "
        f"op is one of: {', '.join(OPS)}."
    )
    return schema


def _keyframes_schema(description: str) -> dict[str, Any]:
    """The request's ``keyframes`` over MCP: each image a path or a URL (Python's other image forms do not travel)."""
    from ..request import MAX_KEYFRAMES

    item = {
        "type": "object",
        "required": ["time", "image"],
        "additionalProperties": False,
        "properties": {
            "time": {"type": "number", "minimum": 0, "description": "Seconds from the clip's start."},
            "image": {"type": "string", "description": "A local file path or an http(s) URL of the image."},
        },
    }
    return {"type": "array", "maxItems": MAX_KEYFRAMES, "items": item, "description": description}


def _video_request_schema() -> dict[str, Any]:
    from ..request import ASPECT_RATIOS, RESOLUTIONS, VideoRequest

    schema = _strip_titles(VideoRequest.model_json_schema())
    props: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        if name in _REQUEST_EXCLUDED:
            continue
        if name == "image":  # Any in Python (arrays, PIL images...); over MCP a path or a URL
            prop = {"type": "string"}
        elif name == "aspect_ratio":
            prop = {"type": "string", "enum": list(ASPECT_RATIOS)}
        elif name == "resolution":
            prop = {"type": "string", "enum": list(RESOLUTIONS)}
        elif name == "postprocess":
            prop = _steps_schema()
        elif name == "keyframes":  # a list of the Keyframe model, whose $defs entry is not kept here
            prop = _keyframes_schema(prop.get("description", ""))
        props[name] = {**prop, "description": _REQUEST_FIELDS.get(name, prop.get("description", ""))}
    props["wait_seconds"] = _WAIT
    props["idempotency_key"] = _KEY
    return {"type": "object", "properties": props, "required": ["prompt"], "additionalProperties": False}


def _storyboard_schema() -> dict[str, Any]:
    from ..storyboard import Storyboard

    schema = _strip_titles(Storyboard.model_json_schema())
    props = schema["properties"]
    props["title"]["description"] = "The film's title."
    props["scenes"]["description"] = (
        "The shots, in order. Each: prompt (one shot, one action, its motion and camera move), duration in seconds, "
        "transition into the next (cut, fade:0.5, dissolve:0.5, wipe:0.5), continuity (true: start from the "
        "previous shot's last frame, so a character carries across the cut), seed."
    )
    props["defaults"]["description"] = (
        "Request fields shared by every scene (backend, model, seed, fps, width, height, num_inference_steps, "
        "guidance_scale, negative_prompt...)."
    )
    props["title_card"]["description"] = "Text (or {text, subtitle, duration, color, background}) before scene 1."
    props["audio"]["description"] = "A soundtrack: a local audio file path, or {path, volume, fade_in, fade_out}."
    props["wait_seconds"] = _WAIT
    props["idempotency_key"] = _KEY
    return schema


def _prompt_schema() -> dict[str, Any]:
    from ..prompts import LIBRARY, TEMPLATES, VideoPrompt

    schema = _strip_titles(VideoPrompt.model_json_schema())
    props = schema["properties"]
    words = {
        "subject": "Who or what the video shows (required).",
        "action": "The ONE thing the subject does, with its motion ('trots through fresh snow').",
        "setting": "Where it happens.",
        "negative": "What must not appear.",
        "prefix": "Words put in front of the subject ('Product shot of').",
    }
    for name, prop in props.items():
        if name in LIBRARY:
            prop["description"] = f"A library name ({', '.join(LIBRARY[name])}) or free text."
        else:
            prop["description"] = words.get(name, "")
    props["template"] = {
        "type": "string",
        "enum": list(TEMPLATES),
        "description": "Start from a template; the parts given override it.",
    }
    return schema


def _specs() -> dict[str, ToolSpec]:
    video_id = {"type": "string", "description": "The job id generate_video (or list_videos) handed back."}
    specs = [
        ToolSpec(
            "generate_video",
            "Generate a video",
            "Make a video from a prompt (and optionally an image or a clip to extend). Starts a job, reports "
            "progress, and waits up to wait_seconds: the answer is the finished video (with its thumbnail "
            "to look at and resource links to the file and recipe) or, if it is still running, its id for "
            "get_video. " + PROMPT_ADVICE,
            _video_request_schema(),
        ),
        ToolSpec(
            "get_video",
            "Get (or wait for) a video",
            "The job's status and progress; with wait_seconds, wait for it to finish (progress as "
            "notifications). A finished video comes with its thumbnail and resource links.",
            {
                "type": "object",
                "properties": {"video_id": video_id, "wait_seconds": {**_WAIT, "default": 0}},
                "required": ["video_id"],
                "additionalProperties": False,
            },
            read_only=True,
        ),
        ToolSpec(
            "list_videos",
            "List videos",
            "Recent video jobs, newest first, with their status.",
            {
                "type": "object",
                "properties": {
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 100,
                        "default": 20,
                        "description": "How many to list.",
                    },
                    "after": {"type": "string", "description": "A video id: list the ones before it (paging)."},
                },
                "additionalProperties": False,
            },
            read_only=True,
        ),
        ToolSpec(
            "cancel_video",
            "Cancel a video",
            "Stop a queued or running job; a remote provider's task is cancelled too, so its bill stops.",
            {
                "type": "object",
                "properties": {"video_id": video_id},
                "required": ["video_id"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            "build_prompt",
            "Build a prompt",
            "Turn parts (subject, action, setting, style, camera, lighting, mood) into a well-formed video "
            "prompt and a negative prompt, ready for generate_video. Library names expand to phrases the "
            "models know. " + PROMPT_ADVICE,
            _prompt_schema(),
            read_only=True,
        ),
        ToolSpec(
            "render_storyboard",
            "Render a storyboard",
            "Several shots cut into one film, with transitions, continuity between shots, a title card and "
            "a soundtrack; checked as a whole before anything runs. A job like generate_video's: waits up to "
            "wait_seconds, then hands back its id.",
            _storyboard_schema(),
        ),
        ToolSpec(
            "list_backends",
            "List backends",
            "The engines Kinema knows, whether each can run here and, if not, why (a missing key or extra) "
            "and what it makes (text, image or clip to video).",
            {"type": "object", "properties": {}, "additionalProperties": False},
            read_only=True,
        ),
        ToolSpec(
            "enhance_video",
            "Enhance a video",
            "Post-process a finished video into a new one: upscale, interpolate (smoother motion), fps, "
            "denoise, sharpen, loop, trim, or add a soundtrack. A job like generate_video's; the original "
            "is kept.",
            {
                "type": "object",
                "properties": {
                    "video_id": video_id,
                    "steps": _steps_schema(),
                    "wait_seconds": _WAIT,
                    "idempotency_key": _KEY,
                },
                "required": ["video_id", "steps"],
                "additionalProperties": False,
            },
        ),
    ]
    out = {}
    for s in specs:
        allowed = tuple(s.schema.get("properties", {}))
        out[s.name] = ToolSpec(s.name, s.title, s.description, _hoist_defs(s.schema), s.read_only, allowed)
    return out


TOOLS: dict[str, ToolSpec] = _specs()


def check_arguments(tool: str, arguments: dict[str, Any]) -> None:
    """Refuse an argument the tool does not take, or a missing required one, naming it and what is allowed."""
    spec = TOOLS[tool]
    for name in arguments:
        if name not in spec.allowed:
            raise InvalidRequest(
                name, f"is not an argument of {tool}", value=name, allowed=", ".join(spec.allowed) or "no arguments"
            )
    for name in spec.schema.get("required", ()):
        if arguments.get(name) is None:
            raise InvalidRequest(name, "is required", allowed=spec.schema["properties"][name].get("description"))
    for name in ("video_id", "after", "idempotency_key"):
        value = arguments.get(name)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 200):
            raise InvalidRequest(name, f"must be text of 1 to 200 characters, got {value!r}", value=value)


def wait_seconds_of(arguments: dict[str, Any], default: float = DEFAULT_WAIT_SECONDS) -> float:
    """``wait_seconds``, checked: a number from 0 to 600."""
    value = arguments.get("wait_seconds", default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(
            "wait_seconds", f"must be a number, got {value!r}", value=value, allowed=f"0 to {MAX_WAIT_SECONDS:g}"
        )
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise InvalidRequest("wait_seconds", f"must be between 0 and {MAX_WAIT_SECONDS:g}, got {value:g}", value=value)
    return float(value)
