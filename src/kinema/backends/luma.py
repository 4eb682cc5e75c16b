"""Luma Dream Machine through the official ``lumaai`` SDK (reference/provider-apis.md §2).

``POST /generations/video`` creates a Generation; ``GET /generations/{id}`` is polled (state queued -> queued,
dreaming -> in_progress, completed, failed with ``failure_reason``). The video is ``assets.video``. Luma takes an
aspect ratio, a resolution name and a duration ("5s" / "9s"), so Kinema's width x height maps onto the closest
listed (ratio, resolution). Image-to-video takes the first frame as a public URL (``keyframes.frame0``); keyframes
add the last one as ``keyframes.frame1`` (lumaai 1.21.0 types/generations/video_create_params.py ``Keyframes``: both
optional, so a last frame alone is sent as frame1 alone). Edits go to modify-video (``POST
/generations/video/modify``: ``media.url``, ``mode``), which takes the clip only as a URL (Luma has no upload API), so
``source_video`` must be an http(s) URL; ``strength`` picks one of its nine modes (:func:`modify_mode`).

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
from ..request import VideoRequest
from .base import Capabilities, GenerationParams
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    body_message,
    is_url,
    known_ratio,
    probe_source_video,
    ratio_sizes,
    short_side_name,
    stainless_error,
)

__all__ = ["LumaBackend", "LUMA_MODELS", "LUMA_RATIOS", "LUMA_RESOLUTIONS"]

LUMA_MODELS = ("ray-2", "ray-flash-2")
LUMA_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")
LUMA_RESOLUTIONS = {"540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}
_STATUS = {"queued": "queued", "dreaming": "in_progress", "completed": "completed", "failed": "failed"}
#: modify-video's modes, from closest to the source to furthest (lumaai 1.21.0
#: types/generations/video_modify_params.py; docs.lumalabs.ai/docs/modify-video: adhere "adheres very closely",
#: flex "flexibly adheres somewhat", reimagine "adheres much more loosely")
MODIFY_MODES = tuple(f"{kind}_{n}" for kind in ("adhere", "flex", "reimagine") for n in (1, 2, 3))
#: an edit without a strength gets the middle mode (flex_2): Luma's API has no default (mode is required)
MODIFY_DEFAULT_STRENGTH = 0.5
#: "ray-2: max duration 10s, max size 100 mb" (docs.lumalabs.ai/docs/modify-video)
MODIFY_MAX_SECONDS = 10.0
MODIFY_MAX_BYTES = 100_000_000


def modify_mode(strength: float) -> str:
    """The modify-video mode for a strength: nine equal bands of 0..1, adhere_1 (0 to 1/9) up to reimagine_3 (8/9
    to 1). The mapping is Kinema's: Luma names the modes in order but gives them no numbers.

    >>> modify_mode(0.0), modify_mode(0.5), modify_mode(1.0)
    ('adhere_1', 'flex_2', 'reimagine_3')
    """
    return MODIFY_MODES[min(len(MODIFY_MODES) - 1, int(strength * len(MODIFY_MODES)))]


#: the request fields that set an output's size and length
FRAMING_FIELDS = ("width", "height", "aspect_ratio", "resolution", "duration", "num_frames", "fps")


def keeps_source_framing(
    request: VideoRequest,
    where: str,
    nominal: GenerationParams,
    *,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any] | None:
    """For an edit whose output keeps the source clip's length and framing (modify-video): for a local clip, probe it
    (refusing one over the limits, naming ``source_video``) and return its width, height, num_frames and fps; None
    for a URL (not fetched here: the plan shows ``nominal``, the backend's defaults). A size or length asked for is
    refused (it would be silently ignored) unless it is the clip's own, or for a URL the nominal one: the request a
    resume rebuilds from the recorded one carries them."""
    source = str(request.source_video)
    clip = None
    if not is_url(source):
        probed = probe_source_video(source, where, max_seconds=max_seconds, max_bytes=max_bytes)
        clip = {k: probed[k] for k in ("width", "height", "num_frames", "fps")}
    own = clip or {
        "width": nominal.width,
        "height": nominal.height,
        "num_frames": nominal.num_frames,
        "fps": nominal.fps,
    }
    values = {**own, "duration": own["num_frames"] / own["fps"], "aspect_ratio": None, "resolution": None}
    for name in FRAMING_FIELDS:
        given, value = getattr(request, name), values[name]
        if given is not None and (value is None or abs(float(given) - float(value)) > 1e-3 * max(1.0, value)):
            raise InvalidRequest(
                name,
                f"{where} keeps the source clip's length and framing; leave {name} out when editing",
                value=given,
                allowed="the source clip's own",
            )
    return clip


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
            raise InvalidRequest(
                "model",
                f"{model!r} is not a Luma Dream Machine video model",
                value=model,
                allowed=", ".join(LUMA_MODELS),
            )
        return Capabilities(
            modes=("t2v", "i2v", "keyframes", "edit"),
            default_strength=MODIFY_DEFAULT_STRENGTH,
            edit_max_frames=int(MODIFY_MAX_SECONDS * 24),
            default_size=(1280, 720),
            sizes=ratio_sizes(LUMA_RATIOS, tuple(LUMA_RESOLUTIONS.values())),
            aspect_ratios=tuple(r for r in LUMA_RATIOS if r != "9:21"),
            durations=(5.0, 9.0),
            default_fps=24.0,
            negative_prompt=False,
            notes="aspect ratio x resolution (540p, 720p, 1080p, 4k); 5 s or 9 s; edits "
            "(modify-video) take the clip as an http(s) URL and keep its length and framing",
        )

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        if request.mode != "edit":
            return super().resolve(request, seed)
        where = f"Luma {request.model or self.default_model()!r} (modify-video)"
        if not is_url(request.source_video):
            raise InvalidRequest(
                "source_video",
                f"{where} takes the clip as a public URL (media.url) and Luma has no "
                "upload API, so a local file cannot be sent",
                value=str(request.source_video)[:80],
                allowed="an http(s) URL",
            )
        # the output keeps the source's length and framing, which are not known here without fetching the clip: the
        # plan's size and length are the defaults, and the recipe says so; modify-video takes no duration or ratio
        params = super().resolve(request.model_copy(update=dict.fromkeys(FRAMING_FIELDS)), seed)
        keeps_source_framing(request, where, params)
        note = f"{where} keeps the source clip's length and framing; the size and length shown are nominal"
        return params.with_(warnings=[*params.warnings, note])

    def check(self, params: GenerationParams) -> None:
        frames = {"image": params.image_source, "last_image": params.last_image_source}
        for field, source in frames.items():
            if source is not None and not _is_url(source):
                which = "first" if field == "image" else "last"
                raise InvalidRequest(
                    field,
                    f"Luma takes the {which} frame as a public URL, not a local file",
                    value=str(source)[:80],
                    allowed="an http(s) URL",
                )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        lumaai = require_module("lumaai", "cloud", feature="the luma backend")
        # max_retries=0: no hidden re-send of a create that may have been accepted
        return lumaai.LumaAI(
            auth_token=self.api_key("LUMAAI_API_KEY"),
            base_url=os.environ.get("LUMAAI_BASE_URL") or None,
            max_retries=0,
            timeout=loop.request_timeout,
        )

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        callback = self.callback_url()
        if params.mode == "edit":
            assert params.strength is not None  # the default strength fills it in
            edit: dict[str, Any] = {
                "generation_type": "modify_video",
                "model": params.model,
                "prompt": params.prompt,
                "media": {"url": params.source_video_path},
                "mode": modify_mode(params.strength),
            }
            if callback:
                edit["callback_url"] = callback
            generation = client.generations.video.modify(**edit)
            return str(generation.id), {}, None
        kwargs: dict[str, Any] = {
            "model": params.model,
            "prompt": params.prompt,
            "aspect_ratio": known_ratio(params.width, params.height, LUMA_RATIOS),
            "resolution": short_side_name(params.width, params.height, LUMA_RESOLUTIONS),
            "duration": f"{int(round(params.duration))}s",
        }
        if "loop" in params.options:
            kwargs["loop"] = bool(params.options["loop"])
        keyframes: dict[str, Any] = {}
        if params.image_source is not None:
            keyframes["frame0"] = {"type": "image", "url": params.image_source}
        if params.mode == "keyframes":
            keyframes["frame1"] = {"type": "image", "url": params.last_image_source}
        if keyframes:
            kwargs["keyframes"] = keyframes
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
            return TaskStatus(
                status="failed",
                raw_status=state,
                error_code="image_fetch",
                moderated=False,
                error_message=f"{reason} ({_IMAGE_FETCH_HINT})",
            )
        return TaskStatus(
            status=_STATUS.get(state, "in_progress"),
            raw_status=state,
            output_urls=[url] if url else [],
            error_message=reason,
        )

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # DELETE /generations/{id} (lumaai SDK resources/generations/generations.py ``delete``): 204
        client.generations.delete(task_id)
        return "DELETE /generations/{id}: deleted"

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        mapped = stainless_error(self.provider, exc)
        if isinstance(mapped, ContentRejected) and _image_fetch_failed(str(mapped.message)):
            message, _ = body_message(getattr(exc, "body", None))
            return ProviderError(
                f"luma could not use the input image: {message} ({_IMAGE_FETCH_HINT})",
                provider=self.provider,
                provider_code="image_fetch",
                provider_message=message,
                status_code=getattr(exc, "status_code", None),
            )
        return mapped or super().translate_error(exc)


#: Luma's "failed to moderate image" means its moderation step could not download the image, not that the image
#: was refused (lumalabs/ComfyUI-LumaAI-API#9)
_IMAGE_FETCH = re.compile(r"failed to moderate image", re.I)
_IMAGE_FETCH_HINT = (
    "Luma could not download the input image: make sure the URL is public, answers quickly and "
    "serves a JPEG or PNG; this is not a content refusal"
)


def _image_fetch_failed(text: Any) -> bool:
    return isinstance(text, str) and bool(_IMAGE_FETCH.search(text))


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))
