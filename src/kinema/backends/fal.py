"""fal.ai's queue (reference/provider-apis.md §6): Kling, Pika and fal's other video models by endpoint id.

``POST {queue}/{endpoint id}`` returns ``{request_id, status_url, response_url, cancel_url}``; ``GET status_url``
is polled (``IN_QUEUE`` -> queued, ``IN_PROGRESS`` -> in_progress, ``COMPLETED`` -> completed, or failed when it
carries ``error`` / ``error_type``); ``GET response_url`` gives the model output ``{video: {url}}``. Status and
result URLs drop the endpoint's subpath, so they are recorded at submit and rebuilt from the app id on resume.

``fal-client`` supplies the credentials (``FAL_KEY``, or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``), the queue host
(``FAL_QUEUE_RUN_HOST``) and the endpoint-id parsing. The HTTP calls themselves are made here: fal-client's submit
retries a POST up to 10 times (on timeouts too), which could pay for a generation twice, and its status parser
fails on answers without ``logs``. ``KINEMA_FAL_BASE_URL`` overrides the whole queue URL (for a local fake).

Models are families; the mode picks the endpoint (``fal-ai/kling-video/v2.5-turbo/pro`` + an image is
``.../image-to-video``). A full endpoint id is accepted too. Keyframes go to the image-to-video endpoint as
``image_url`` + ``tail_image_url`` where fal's model page lists the tail (Kling 2.5 Turbo Pro). Edits go to Wan 2.2's
``fal-ai/wan/v2.2-a14b/video-to-video`` (``video_url`` + ``strength``), reference images to Kling 1.6's
``fal-ai/kling-video/v1.6/standard/elements`` (``input_image_urls``, up to 4); a request without a model gets the
family that does its mode. Files go as an https URL as given, else inline as a ``data:`` URI (docs/providers.md).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="fal", model="fal-ai/pika/v2.2", duration=5)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import BackendUnavailable, InvalidRequest, KinemaError, ProviderError
from ..request import VideoRequest
from .base import Availability, Capabilities, GenerationParams
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    body_message,
    data_uri,
    encode_png,
    http_error,
    known_ratio,
    looks_moderated,
    ratio_sizes,
    short_side_name,
    source_video_uri,
)

__all__ = ["FalBackend", "FAL_MODELS"]

_SUBPATH = {"t2v": "text-to-video", "i2v": "image-to-video", "edit": "video-to-video", "references": "elements"}
#: the endpoint subpath of each mode (keyframes are image-to-video with a tail image)
_MODE_SUBPATH = {**_SUBPATH, "keyframes": "image-to-video"}
#: the family a request without a model gets for a mode the default (Kling 2.5 Turbo Pro) does not offer
MODE_DEFAULTS = {"edit": "fal-ai/wan/v2.2-a14b", "references": "fal-ai/kling-video/v1.6/standard"}
#: a local source clip goes inline as a data: URI; fal's docs accept data URIs for file inputs but state no size
#: limit [unverified], so a larger clip is refused, asking for a URL (fal-client's own uploads use 10 MiB parts)
VIDEO_DATA_URI_LIMIT = 10_000_000


@dataclass(frozen=True)
class FalFamily:
    kind: str  # "kling", "pika" or "wan": how the input is spelled
    modes: tuple[str, ...]
    durations: tuple[float, ...] | None
    ratios: tuple[str, ...]
    resolutions: dict[str, int]
    #: the image-to-video endpoint takes ``tail_image_url`` (the last frame): keyframes
    tail: bool = False
    #: reference images the ``elements`` endpoint takes (0: none)
    max_references: int = 0
    #: frame counts (Wan takes ``num_frames``, not a duration): (min, max), and the default fps
    frames: tuple[int, int] | None = None
    fps: float = 24.0


_KLING_RATIOS = ("16:9", "9:16", "1:1")
_PIKA_RATIOS = ("16:9", "9:16", "1:1", "4:5", "5:4", "3:2", "2:3")
_KLING_RES = {"720p": 720, "1080p": 1080}
FAL_MODELS: dict[str, FalFamily] = {
    # tail_image_url: "URL of the image to be used for the end of the video" (fal.ai/models/fal-ai/kling-video/
    # v2.5-turbo/pro/image-to-video/llms.txt, input schema; image_url stays required)
    "fal-ai/kling-video/v2.5-turbo/pro": FalFamily(
        "kling", ("t2v", "i2v", "keyframes"), (5.0, 10.0), _KLING_RATIOS, _KLING_RES, tail=True
    ),
    "fal-ai/kling-video/v2.1/master": FalFamily("kling", ("t2v", "i2v"), (5.0, 10.0), _KLING_RATIOS, _KLING_RES),
    "fal-ai/kling-video/v2.1/standard": FalFamily("kling", ("i2v",), (5.0, 10.0), _KLING_RATIOS, _KLING_RES),
    "fal-ai/kling-video/v2/master": FalFamily("kling", ("t2v",), (5.0, 10.0), _KLING_RATIOS, _KLING_RES),
    "fal-ai/pika/v2.2": FalFamily("pika", ("t2v", "i2v"), (5.0, 10.0), _PIKA_RATIOS, {"720p": 720, "1080p": 1080}),
    "fal-ai/pika/v2.5": FalFamily(
        "pika", ("t2v",), (5.0, 10.0), _PIKA_RATIOS, {"480p": 480, "720p": 720, "1080p": 1080}
    ),
    # .../elements: prompt, input_image_urls ("Supports up to 4 images", required), duration "5"/"10", aspect_ratio
    # 16:9/9:16/1:1, negative_prompt (fal.ai/models/fal-ai/kling-video/v1.6/standard/elements/llms.txt)
    "fal-ai/kling-video/v1.6/standard": FalFamily(
        "kling", ("references",), (5.0, 10.0), _KLING_RATIOS, {"720p": 720}, max_references=4
    ),
    # .../video-to-video: video_url and prompt (required), strength 0..1 (default 0.9; 1 follows the prompt alone, 0
    # hands the input back), num_frames 17..161, frames_per_second 4..60, resolution 480p/580p/720p, aspect_ratio
    # auto/16:9/9:16/1:1, seed, negative_prompt, num_interpolated_frames 0..4 (fal.ai/models/fal-ai/wan/v2.2-a14b/
    # video-to-video/llms.txt and its api page)
    "fal-ai/wan/v2.2-a14b": FalFamily(
        "wan", ("edit",), None, _KLING_RATIOS, {"480p": 480, "580p": 580, "720p": 720}, frames=(17, 161), fps=16.0
    ),
}
#: Wan's frames_per_second range and default strength (its model page)
WAN_FPS = (4, 60)
WAN_DEFAULT_STRENGTH = 0.9
_STATUS = {"IN_QUEUE": "queued", "IN_PROGRESS": "in_progress", "COMPLETED": "completed"}


def split_endpoint(model: str) -> tuple[str, str | None]:
    """(family, mode or None) of a family id or a full endpoint id."""
    for mode, sub in _SUBPATH.items():
        if model.endswith("/" + sub):
            return model[: -len(sub) - 1], mode
    return model, None


class FalBackend(RemoteBackend):
    name = "fal"
    provider = "fal"
    description = "fal.ai queue (Kling, Pika, Wan edits and other video models by endpoint id)"
    env_keys = ("FAL_KEY",)
    requires = (("fal_client", "cloud"), ("httpx", "cloud"))
    recommended_poll_interval = 2.0
    max_poll_interval = 15.0
    provider_options = ("cfg_scale",)

    def availability(self) -> Availability:
        if not os.environ.get("FAL_KEY") and os.environ.get("FAL_KEY_ID") and os.environ.get("FAL_KEY_SECRET"):
            return _without_key_check(self)  # the key-id + secret pair is the other accepted credential
        return super().availability()

    def models(self) -> list[str]:
        return list(FAL_MODELS)

    def default_model(self) -> str:
        return "fal-ai/kling-video/v2.5-turbo/pro"

    def _family(self, model: str | None) -> FalFamily:
        family, _ = split_endpoint(model or self.default_model())
        if family not in FAL_MODELS:
            endpoints = ", /".join(_SUBPATH.values())
            allowed = f"{', '.join(FAL_MODELS)} (or one of them + the endpoint: /{endpoints})"
            raise InvalidRequest(
                "model", f"{model!r} is not a fal video endpoint Kinema knows", value=model, allowed=allowed
            )
        return FAL_MODELS[family]

    def capabilities(self, model: str | None = None) -> Capabilities:
        fam = self._family(model)
        _, mode = split_endpoint(model or self.default_model())
        modes = (mode,) if mode else fam.modes
        if mode == "i2v" and fam.tail:  # the image-to-video endpoint does keyframes too
            modes = ("i2v", "keyframes")
        if mode and mode not in fam.modes:
            modes = fam.modes
        frames: dict[str, Any] = {}
        if fam.frames is not None:
            low, high = fam.frames
            frames = {"min_frames": low, "max_frames": high, "default_frames": 81, "edit_max_frames": high}
        return Capabilities(
            modes=modes,
            max_references=fam.max_references,
            default_size=(1280, 720),
            sizes=ratio_sizes(fam.ratios, tuple(fam.resolutions.values())),
            aspect_ratios=tuple(r for r in fam.ratios if r in ("16:9", "9:16", "1:1", "3:2", "2:3")),
            durations=fam.durations,
            default_fps=fam.fps,
            seed=fam.kind in ("pika", "wan"),
            default_strength=WAN_DEFAULT_STRENGTH if "edit" in fam.modes else 0.6,
            **frames,
        )

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        if request.model is None and request.mode in MODE_DEFAULTS:
            request = request.model_copy(update={"model": MODE_DEFAULTS[request.mode]})
        return super().resolve(request, seed)

    def check(self, params: GenerationParams) -> None:
        where = f"fal {params.model!r}"
        if params.mode == "keyframes" and params.image_source is None:
            raise InvalidRequest(
                "image",
                f"{where} needs the first frame (image_url is required) with the last one",
                allowed="image and last_image together",
            )
        if params.mode == "references" and "cfg_scale" in params.options:
            # the elements endpoint's schema lists no cfg_scale: refused rather than silently dropped
            raise InvalidRequest("options.cfg_scale", f"is not taken by {where}'s elements endpoint", allowed="none")
        if params.mode == "edit":
            low, high = WAN_FPS
            if not (low <= params.fps <= high and float(params.fps).is_integer()):
                raise InvalidRequest(
                    "fps",
                    f"{params.fps:g} is not offered by {where} (frames_per_second is a whole "
                    f"number from {low} to {high})",
                    value=params.fps,
                    allowed=f"{low} to {high}",
                )
            if "cfg_scale" in params.options:
                raise InvalidRequest("options.cfg_scale", f"is not taken by {where}", allowed="none")
            source_video_uri(params.source_video_path, VIDEO_DATA_URI_LIMIT, where, encode=False)

    # -- transport ------------------------------------------------------------------------------------------------
    def _auth_header(self) -> str:
        key = os.environ.get("FAL_KEY", "").strip()
        if not key and os.environ.get("FAL_KEY_ID") and os.environ.get("FAL_KEY_SECRET"):
            key = f"{os.environ['FAL_KEY_ID']}:{os.environ['FAL_KEY_SECRET']}"
        if not key:
            raise BackendUnavailable(self.name, "API key missing: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)")
        from fal_client.auth import AuthCredentials

        return str(AuthCredentials("Key", key).header_value)

    def secrets(self) -> list[str]:
        return [v for k in ("FAL_KEY", "FAL_KEY_SECRET") if (v := os.environ.get(k)) and len(v) >= 4]

    def _queue_url(self) -> str:
        if os.environ.get("KINEMA_FAL_BASE_URL"):
            return os.environ["KINEMA_FAL_BASE_URL"].rstrip("/")
        from fal_client.auth import FAL_QUEUE_RUN_HOST

        return f"https://{FAL_QUEUE_RUN_HOST}"

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        httpx = require_module("httpx", "cloud", feature="the fal backend")
        require_module("fal_client", "cloud", feature="the fal backend")
        return httpx.Client(
            headers={"Authorization": self._auth_header()}, timeout=loop.request_timeout, follow_redirects=True
        )

    def _json(self, client: Any, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = client.request(method, url, json=body)
        if resp.status_code >= 400:
            try:
                payload: Any = resp.json()
            except ValueError:
                payload = resp.text[:500]
            message, code = body_message(payload)
            error_type = (payload.get("error_type") if isinstance(payload, dict) else None) or resp.headers.get(
                "x-fal-error-type"
            )
            raise http_error(
                self.provider,
                resp.status_code,
                message,
                code=error_type or code,
                headers=resp.headers,
                moderated=looks_moderated(error_type, message) or None,
            )
        data = resp.json()
        return data if isinstance(data, dict) else {}

    # -- the loop's parts -----------------------------------------------------------------------------------------
    def _endpoint(self, params: GenerationParams) -> str:
        family, _ = split_endpoint(str(params.model))
        return f"{family}/{_MODE_SUBPATH[params.mode]}"

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        fam = self._family(params.model)
        body: dict[str, Any] = {
            "prompt": params.prompt,
            "aspect_ratio": known_ratio(params.width, params.height, fam.ratios),
        }
        if params.negative_prompt:
            body["negative_prompt"] = params.negative_prompt
        if fam.kind == "wan":
            assert params.strength is not None  # the family's default_strength fills it in
            body.update(
                video_url=source_video_uri(params.source_video_path, VIDEO_DATA_URI_LIMIT, f"fal {params.model!r}"),
                strength=params.strength,
                num_frames=params.num_frames,
                frames_per_second=int(params.fps),
                resolution=short_side_name(params.width, params.height, fam.resolutions),
                seed=params.seed,
                # no interpolated frames: the clip has the frame count and rate asked for (fal's default, 1, with
                # adjust_fps_for_interpolation, would double both)
                num_interpolated_frames=0,
            )
        elif fam.kind == "kling":
            body["duration"] = str(int(round(params.duration)))
            if "cfg_scale" in params.options:
                body["cfg_scale"] = params.options["cfg_scale"]
        else:
            body["duration"] = int(round(params.duration))
            body["resolution"] = short_side_name(params.width, params.height, fam.resolutions)
            body["seed"] = params.seed
        if params.mode in ("i2v", "keyframes"):
            assert params.image is not None
            body["image_url"] = _image_url(params.image_source, params.image)
        if params.mode == "keyframes":
            assert params.last_image is not None
            body["tail_image_url"] = _image_url(params.last_image_source, params.last_image)
        if params.mode == "references":
            body["input_image_urls"] = [
                _image_url(source, image)
                for source, image in zip(params.reference_sources, params.references, strict=True)
            ]
        endpoint = self._endpoint(params)
        url = f"{self._queue_url()}/{endpoint}"
        callback = self.callback_url()
        if callback:  # fal's queue calls it when the request ends (query parameter fal_webhook, fal queue docs)
            from urllib.parse import urlencode

            url += "?" + urlencode({"fal_webhook": callback})
        data = self._json(client, "POST", url, body)
        request_id = str(data.get("request_id") or "")
        if not request_id:
            raise ProviderError("fal accepted the request but returned no request_id", provider=self.provider)
        info = {
            "endpoint": endpoint,
            "status_url": data.get("status_url"),
            "response_url": data.get("response_url"),
            "cancel_url": data.get("cancel_url"),
        }
        return request_id, info, None

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # PUT .../requests/{id}/cancel (fal docs, queue API); it only works while the request is still queued
        status_url, _ = self._urls(task_id, info)
        url = str(info.get("cancel_url") or status_url.rsplit("/status", 1)[0] + "/cancel")
        resp = client.request("PUT", url)
        try:
            answer = resp.json()
        except ValueError:
            answer = resp.text[:200]
        if resp.status_code >= 400:
            message, _ = body_message(answer)
            return f"HTTP {resp.status_code}: {message} (a request that has started runs to the end)"
        status = answer.get("status") if isinstance(answer, dict) else None
        return f"HTTP {resp.status_code}: {status or answer}"

    def _urls(self, task_id: str, info: dict[str, Any]) -> tuple[str, str]:
        if info.get("status_url") and info.get("response_url"):
            return str(info["status_url"]), str(info["response_url"])
        from fal_client.client import AppId

        endpoint = info.get("endpoint") or self._endpoint_from(info)
        app = AppId.from_endpoint_id(endpoint)
        prefix = f"{app.namespace}/" if app.namespace else ""
        base = f"{self._queue_url()}/{prefix}{app.owner}/{app.alias}/requests/{task_id}"  # the subpath is dropped
        return base + "/status", base

    def _endpoint_from(self, info: dict[str, Any]) -> str:
        family, _ = split_endpoint(str(info.get("model") or self.default_model()))
        return f"{family}/{_MODE_SUBPATH.get(str(info.get('mode')), 'text-to-video')}"

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        status_url, response_url = self._urls(task_id, info)
        data = self._json(client, "GET", status_url + "?logs=0")
        raw = str(data.get("status"))
        if raw not in _STATUS:
            raise ProviderError(
                f"fal answered an unknown status {raw!r} for request {task_id}",
                provider=self.provider,
                provider_code="unknown_status",
            )
        if raw == "COMPLETED" and (data.get("error") or data.get("error_type")):
            return TaskStatus(
                status="failed",
                raw_status=raw,
                error_code=data.get("error_type"),
                error_message=str(data.get("error") or data.get("error_type")),
            )
        if raw != "COMPLETED":
            position = data.get("queue_position")
            return TaskStatus(status=_STATUS[raw], raw_status=raw if position is None else f"{raw} (#{position})")
        result = self._json(client, "GET", str(data.get("response_url") or response_url))
        video = result.get("video") or {}
        url = video.get("url") if isinstance(video, dict) else None
        metrics = data.get("metrics") or {}
        cost = (
            {"inference_time": metrics["inference_time"]}
            if isinstance(metrics, dict) and metrics.get("inference_time") is not None
            else None
        )
        return TaskStatus(status="completed", raw_status=raw, output_urls=[url] if url else [], cost=cost)

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return super().translate_error(exc)


def _image_url(source: Any, image: Any) -> str:
    """An https URL as given, else the image as a PNG data URI (fal takes data URIs for file inputs)."""
    if isinstance(source, str) and source.startswith("https://"):
        return source
    return data_uri(encode_png(image))


def _without_key_check(backend: FalBackend) -> Availability:
    from .base import module_available

    for module, extra in backend.requires:
        if not module_available(module):
            return Availability.no(f"extra '{extra}' not installed (pip install 'kinema[{extra}]')")
    return Availability.ok()
