"""Luma Dream Machine through the official ``lumaai`` SDK (reference/provider-apis.md §2).

``POST /generations/video`` creates a Generation; ``GET /generations/{id}`` is polled (state queued -> queued,
dreaming -> in_progress, completed, failed with ``failure_reason``). The video is ``assets.video``. Luma takes an
aspect ratio, a resolution name and a duration ("5s" / "9s"), so Kinema's width x height maps onto the closest
listed (ratio, resolution). Image-to-video takes the first frame as a public URL (``keyframes.frame0``); keyframes
add the last one as ``keyframes.frame1`` (lumaai 1.21.0 types/generations/video_create_params.py ``Keyframes``: both
optional, so a last frame alone is sent as frame1 alone). Luma's modify-video (``POST /generations/video/modify``)
takes the clip only as a URL and Luma has no upload API, while ``source_video`` is a local file: edits are not
offered here (docs/providers.md).

Key: ``LUMAAI_API_KEY``; base URL: ``LUMAAI_BASE_URL`` (the SDK's own variable).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="luma", aspect_ratio="16:9", duration=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ..errors import ContentRejected, InvalidRequest, KinemaError, ProviderError
from .base import Capabilities, GenerationParams
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    body_message,
    known_ratio,
    ratio_sizes,
    short_side_name,
    stainless_error,
)

__all__ = ["LumaBackend", "LUMA_MODELS", "LUMA_RATIOS", "LUMA_RESOLUTIONS"]

LUMA_MODELS = ("ray-2", "ray-flash-2")
LUMA_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")
LUMA_RESOLUTIONS = {"540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}
_STATUS = {"queued": "queued", "dreaming": "in_progress", "completed": "completed", "failed": "failed"}


class LumaBackend(RemoteBackend):
    name = "luma"
    provider = "luma"
    description = "Luma Dream Machine (ray-2, ray-flash-2) via the lumaai SDK"
    env_keys = ("LUMAAI_API_KEY",)
    requires = (("lumaai", "cloud"),)
    recommended_poll_interval = 3.0
    max_poll_interval = 20.0
    provider_options = ("loop",)

    def models(self) -> list[str]:
        return list(LUMA_MODELS)

    def default_model(self) -> str:
        return "ray-2"

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if model not in LUMA_MODELS:
            raise InvalidRequest("model", f"{model!r} is not a Luma Dream Machine video model", value=model,
                                 allowed=", ".join(LUMA_MODELS))  # fmt: skip
        return Capabilities(
            modes=("t2v", "i2v", "keyframes"), default_size=(1280, 720),
            sizes=ratio_sizes(LUMA_RATIOS, tuple(LUMA_RESOLUTIONS.values())),
            aspect_ratios=tuple(r for r in LUMA_RATIOS if r != "9:21"), durations=(5.0, 9.0), default_fps=24.0,
            negative_prompt=False, notes="aspect ratio x resolution (540p, 720p, 1080p, 4k); 5 s or 9 s",
        )  # fmt: skip

    def check(self, params: GenerationParams) -> None:
        frames = {"image": params.image_source, "last_image": params.last_image_source}
        for field, source in frames.items():
            if source is not None and not _is_url(source):
                which = "first" if field == "image" else "last"
                raise InvalidRequest(field, f"Luma takes the {which} frame as a public URL, not a local file",
                                     value=str(source)[:80], allowed="an http(s) URL")  # fmt: skip

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        lumaai = require_module("lumaai", "cloud", feature="the luma backend")
        # max_retries=0: no hidden re-send of a create that may have been accepted
        return lumaai.LumaAI(auth_token=self.api_key("LUMAAI_API_KEY"),
                             base_url=os.environ.get("LUMAAI_BASE_URL") or None, max_retries=0,
                             timeout=loop.request_timeout)  # fmt: skip

    def submit(self, client: Any, params: GenerationParams,
               token: str) -> tuple[str, dict[str, Any], TaskStatus | None]:  # fmt: skip
        kwargs: dict[str, Any] = {
            "model": params.model, "prompt": params.prompt,
            "aspect_ratio": known_ratio(params.width, params.height, LUMA_RATIOS),
            "resolution": short_side_name(params.width, params.height, LUMA_RESOLUTIONS),
            "duration": f"{int(round(params.duration))}s",
        }  # fmt: skip
        if "loop" in params.options:
            kwargs["loop"] = bool(params.options["loop"])
        keyframes: dict[str, Any] = {}
        if params.image_source is not None:
            keyframes["frame0"] = {"type": "image", "url": params.image_source}
        if params.mode == "keyframes":
            keyframes["frame1"] = {"type": "image", "url": params.last_image_source}
        if keyframes:
            kwargs["keyframes"] = keyframes
        callback = self.callback_url()
        if callback:  # Luma POSTs the generation to it on dreaming/completed/failed (unsigned: only a hint)
            kwargs["callback_url"] = callback
        generation = client.generations.create(**kwargs)
        return str(generation.id), {}, None

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        raw = client.generations.with_raw_response.get(task_id)
        data = json.loads(raw.text() if callable(raw.text) else raw.text)
        state = str(data.get("state"))
        assets = data.get("assets") or {}
        url = assets.get("video") if isinstance(assets, dict) else None
        reason = data.get("failure_reason")
        if state == "failed" and _image_fetch_failed(reason):
            return TaskStatus(status="failed", raw_status=state, error_code="image_fetch", moderated=False,
                              error_message=f"{reason} ({_IMAGE_FETCH_HINT})")  # fmt: skip
        return TaskStatus(status=_STATUS.get(state, "in_progress"), raw_status=state,
                          output_urls=[url] if url else [], error_message=reason)  # fmt: skip

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # DELETE /generations/{id} (lumaai SDK resources/generations/generations.py ``delete``): 204
        client.generations.delete(task_id)
        return "DELETE /generations/{id}: deleted"

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        mapped = stainless_error(self.provider, exc)
        if isinstance(mapped, ContentRejected) and _image_fetch_failed(str(mapped.message)):
            message, _ = body_message(getattr(exc, "body", None))
            return ProviderError(f"luma could not use the input image: {message} ({_IMAGE_FETCH_HINT})",
                                 provider=self.provider, provider_code="image_fetch", provider_message=message,
                                 status_code=getattr(exc, "status_code", None))  # fmt: skip
        return mapped or super().translate_error(exc)


#: Luma's "failed to moderate image" means its moderation step could not download the image, not that the image
#: was refused (lumalabs/ComfyUI-LumaAI-API#9)
_IMAGE_FETCH = re.compile(r"failed to moderate image", re.I)
_IMAGE_FETCH_HINT = ("Luma could not download the input image: make sure the URL is public, answers quickly and "
                     "serves a JPEG or PNG; this is not a content refusal")  # fmt: skip


def _image_fetch_failed(text: Any) -> bool:
    return isinstance(text, str) and bool(_IMAGE_FETCH.search(text))


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))
