"""Building prompts from parts: subject, action, setting, style, camera, lighting, mood.

Video models follow prompts that read like a shot description: who or what, doing what, where, then how it is
filmed. :class:`VideoPrompt` puts the parts in that order and renders one well-formed sentence group. Style, camera,
lighting and mood may be a name from the library (``"dolly-in"``, ``"golden-hour"``), which expands to a phrase the
models know, or free text. Templates (``cinematic``, ``product``, ``nature``) fill in the parts a kind of shot
usually has, and a negative prompt.

>>> p = VideoPrompt(subject="a red fox", action="trots through fresh snow", setting="a birch forest",
...                 camera="tracking", lighting="golden-hour", mood="serene")
>>> for sentence in p.render().split(". "):
...     print(sentence)
A red fox trots through fresh snow in a birch forest
Tracking shot, the camera follows the subject
Warm golden-hour sunlight, long soft shadows
Serene, calm mood.
>>> from_template("product", subject="a glass perfume bottle").render().split(". ")[0]
'Product shot of a glass perfume bottle on a seamless white studio backdrop'
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import InvalidRequest

__all__ = [
    "VideoPrompt",
    "CAMERA_MOVES",
    "STYLES",
    "LIGHTING",
    "MOODS",
    "TEMPLATES",
    "LIBRARY",
    "from_template",
    "expand",
]

CAMERA_MOVES: dict[str, str] = {
    "static": "static shot, the camera does not move",
    "pan-left": "the camera pans slowly to the left",
    "pan-right": "the camera pans slowly to the right",
    "tilt-up": "the camera tilts up",
    "tilt-down": "the camera tilts down",
    "dolly-in": "slow dolly in towards the subject",
    "dolly-out": "slow dolly out away from the subject",
    "zoom-in": "slow zoom in",
    "zoom-out": "slow zoom out",
    "tracking": "tracking shot, the camera follows the subject",
    "orbit": "the camera orbits around the subject",
    "crane-up": "crane shot rising upwards",
    "aerial": "aerial drone shot from high above",
    "handheld": "handheld camera with slight natural shake",
    "close-up": "close-up shot",
    "wide": "wide establishing shot",
    "pov": "first-person point-of-view shot",
    "timelapse": "time-lapse",
    "slow-motion": "slow motion",
}
STYLES: dict[str, str] = {
    "cinematic": "cinematic film still, shallow depth of field, anamorphic lens",
    "documentary": "documentary footage, natural and unstaged",
    "anime": "anime style, cel shaded",
    "watercolor": "watercolor painting style",
    "claymation": "claymation, stop-motion look",
    "pixel-art": "pixel art",
    "noir": "black and white film noir",
    "vintage": "vintage 16mm film, film grain",
    "photorealistic": "photorealistic, highly detailed",
    "3d-render": "3D render, octane, smooth shading",
    "product": "clean commercial product photography",
    "minimal": "minimalist, simple shapes, plain colours",
}
LIGHTING: dict[str, str] = {
    "golden-hour": "warm golden-hour sunlight, long soft shadows",
    "blue-hour": "cool blue-hour twilight",
    "overcast": "soft overcast daylight",
    "midday": "bright midday sun, hard shadows",
    "night": "night, moonlight",
    "neon": "neon lights, vivid reflections",
    "studio": "soft even studio lighting",
    "backlit": "backlit, rim light on the subject",
    "candlelight": "warm flickering candlelight",
    "volumetric": "volumetric light rays through haze",
    "high-key": "bright high-key lighting",
    "low-key": "dramatic low-key lighting, deep shadows",
}
MOODS: dict[str, str] = {
    "serene": "serene, calm",
    "joyful": "joyful, uplifting",
    "mysterious": "mysterious, quiet",
    "dramatic": "dramatic, intense",
    "melancholic": "melancholic, wistful",
    "epic": "epic, grand",
    "playful": "playful, light-hearted",
    "tense": "tense, suspenseful",
    "dreamy": "dreamy, soft",
    "romantic": "romantic, tender",
}
LIBRARY: dict[str, dict[str, str]] = {"camera": CAMERA_MOVES, "style": STYLES, "lighting": LIGHTING, "mood": MOODS}

TEMPLATES: dict[str, dict[str, str]] = {
    "cinematic": {
        "style": "cinematic",
        "camera": "dolly-in",
        "lighting": "golden-hour",
        "mood": "dramatic",
        "negative": "blurry, low quality, distorted, watermark, text, jittery motion",
    },
    "product": {
        "style": "product",
        "camera": "orbit",
        "lighting": "studio",
        "mood": "",
        "setting": "on a seamless white studio backdrop",
        "prefix": "Product shot of",
        "negative": "clutter, busy background, blurry, deformed, low quality, watermark, text",
    },
    "nature": {
        "style": "documentary",
        "camera": "aerial",
        "lighting": "golden-hour",
        "mood": "serene",
        "negative": "people, buildings, blurry, low quality, oversaturated, watermark",
    },
}

_PARTS = ("subject", "action", "setting", "style", "camera", "lighting", "mood")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MAX_PART = 500


def expand(kind: str, value: str | None) -> str | None:
    """A library name of ``kind`` (camera, style, lighting, mood) expanded to its phrase; other text as it is."""
    if value is None:
        return None
    key = value.strip().lower().replace("_", "-").replace(" ", "-")
    return LIBRARY[kind].get(key, value.strip())


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".").strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + "."


class VideoPrompt(BaseModel):
    """A prompt made of parts; only ``subject`` is required. ``render()`` gives the text for any backend."""

    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str
    action: str | None = None
    setting: str | None = None
    style: str | None = None
    camera: str | None = None
    lighting: str | None = None
    mood: str | None = None
    negative: str | None = None
    #: words put in front of the subject ("Product shot of")
    prefix: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first.get("loc", ())) or "prompt"
            kind = first.get("type")
            if kind == "extra_forbidden":
                msg = f"is not a prompt part (allowed: {', '.join(type(self).model_fields)})"
            elif kind == "missing":
                msg = "is required"
            else:
                msg = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
            raise InvalidRequest(name, msg, value=first.get("input")) from None

    @field_validator("*")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value):
            raise ValueError("contains control characters")
        if len(value) > _MAX_PART:
            raise ValueError(f"is {len(value)} characters; at most {_MAX_PART} per part")
        value = " ".join(value.split())
        if info.field_name == "subject" and not value:
            raise ValueError("is empty; say who or what the video shows")
        return value or None

    def render(self) -> str:
        """The prompt: "Subject action setting. Camera. Style. Lighting. Mood mood." (parts left out are skipped)."""
        subject = self.subject
        if self.prefix:
            subject = f"{self.prefix} {subject[0].lower() + subject[1:] if subject[:2].istitle() else subject}"
        first = " ".join(p for p in (subject, self.action) if p)
        if self.setting:
            setting = self.setting
            glue = (
                ""
                if re.match(r"^(in|on|at|under|over|inside|near|by|through|across|above|below)\b", setting, re.I)
                else "in "
            )
            first += f" {glue}{setting}"
        sentences = [_sentence(first)]
        camera = expand("camera", self.camera)
        style = expand("style", self.style)
        lighting = expand("lighting", self.lighting)
        mood = expand("mood", self.mood)
        if camera:
            sentences.append(_sentence(camera))
        if style:
            sentences.append(_sentence(style))
        if lighting:
            sentences.append(_sentence(lighting))
        if mood:
            sentences.append(_sentence(mood if mood.lower().endswith("mood") else f"{mood} mood"))
        return " ".join(s for s in sentences if s)

    def __str__(self) -> str:
        return self.render()

    def to_request(self, **fields: Any) -> Any:
        """A :class:`~kinema.VideoRequest` with this prompt (and negative prompt) plus any other fields."""
        from .request import VideoRequest

        if self.negative and "negative_prompt" not in fields:
            fields["negative_prompt"] = self.negative
        return VideoRequest(prompt=self.render(), **fields)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.render(), "negative_prompt": self.negative, "parts": self.model_dump(exclude_none=True)}


def from_template(name: str, **parts: Any) -> VideoPrompt:
    """A prompt from a template (``cinematic``, ``product``, ``nature``); ``parts`` given override the template's.

    A part given as None keeps the template's value; give "" to leave it out.
    """
    if name not in TEMPLATES:
        raise InvalidRequest("template", f"{name!r} is not a template", value=name, allowed=", ".join(TEMPLATES))
    data: dict[str, Any] = dict(TEMPLATES[name])
    data.update({k: v for k, v in parts.items() if v is not None})
    return VideoPrompt(**{k: v for k, v in data.items() if v != "" or k == "subject"})
