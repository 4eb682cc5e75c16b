"""The ``/v1/videos`` job API (OpenAI's shape) through the official ``openai`` SDK.

OpenAI's own Videos API (Sora) shut down on 2026-09-24 (openai-python ``resources/videos.py`` marks every
``client.videos`` method "scheduled to permanently shut down on September 24, 2026"), so this backend is for any
server that speaks the same shape: another Kinema server, vLLM-Omni, SGLang Diffusion, FastVideo. The server must
be named: ``KINEMA_OPENAI_VIDEOS_BASE_URL`` or ``options.base_url`` (for example ``http://gpu-box:8000/v1``); without
one the backend reports itself unusable, and OpenAI's own host is refused. ``OPENAI_API_KEY`` is the server's key.

Wire contract (reference/provider-apis.md §3): ``POST /videos`` (multipart: prompt, model, seconds as a string,
size "WxH", input_reference), ``GET /videos/{id}`` (status queued / in_progress / completed / failed, progress,
error {code, message}), ``GET /videos/{id}/content`` (the MP4, with the key). The server may hint the next poll
with an ``openai-poll-after-ms`` header.

Models: ``sora-2`` and ``sora-2-pro`` (and their dated versions) are checked against the sizes and lengths the
contract lists; any other model id is passed through to the server, which checks it.

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="openai", model="builtin", width=64, height=64)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendUnavailable, InvalidRequest, KinemaError
from .base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams
from .remote import LoopOptions, RemoteBackend, TaskStatus, encode_png, stainless_error

__all__ = ["OpenAIVideosBackend", "SORA_MODELS"]

_SORA_SIZES = ((720, 1280), (1280, 720), (1024, 1792), (1792, 1024))
SORA_MODELS: dict[str, tuple[tuple[int, int], ...]] = {
    "sora-2": _SORA_SIZES,
    "sora-2-2025-10-06": _SORA_SIZES,
    "sora-2-2025-12-08": _SORA_SIZES,
    "sora-2-pro": _SORA_SIZES + ((1080, 1920), (1920, 1080)),
    "sora-2-pro-2025-10-06": _SORA_SIZES + ((1080, 1920), (1920, 1080)),
}
_STATUS = {"queued": "queued", "in_progress": "in_progress", "completed": "completed", "failed": "failed",
           "cancelled": "cancelled"}  # fmt: skip


BASE_URL_VAR = "KINEMA_OPENAI_VIDEOS_BASE_URL"
_RETIRED = (
    "OpenAI's own Videos (Sora) API shut down on 2026-09-24; this backend talks to a compatible /v1/videos "
    f"server (vLLM-Omni, SGLang Diffusion, a Kinema server): set {BASE_URL_VAR} or options.base_url to it"
)


def _base_url_problem(url: str | None) -> str | None:
    """Why ``url`` cannot be used as the /v1/videos server, or None."""
    if not url:
        return f"no server named: set {BASE_URL_VAR} (or options.base_url) to a /v1/videos server, e.g. " \
               "http://gpu-box:8000/v1 (OpenAI's own Sora API is retired)"  # fmt: skip
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    host = parts.hostname.lower()
    if host == "openai.com" or host.endswith(".openai.com"):
        return _RETIRED
    return None


class OpenAIVideosBackend(RemoteBackend):
    name = "openai"
    provider = "openai-videos"
    description = f"any /v1/videos server (OpenAI's shape; {BASE_URL_VAR} names it), via the openai SDK"
    env_keys = ("OPENAI_API_KEY",)
    requires = (("openai", "cloud"),)
    recommended_poll_interval = 2.0
    max_poll_interval = 20.0
    provider_options = ("base_url",)

    def availability(self) -> Availability:
        found = super().availability()
        if not found.usable:
            return found
        problem = _base_url_problem(os.environ.get(BASE_URL_VAR))
        return Availability.no(problem) if problem else found

    def check(self, params: GenerationParams) -> None:
        given = params.options.get("base_url")
        if given is not None:
            problem = _base_url_problem(given if isinstance(given, str) else repr(given))
            if problem:
                raise InvalidRequest("options.base_url", problem, value=given,
                                     allowed="the http(s) URL of a /v1/videos server")  # fmt: skip
        else:
            problem = _base_url_problem(os.environ.get(BASE_URL_VAR))
            if problem:
                raise BackendUnavailable(self.name, problem)

    def models(self) -> list[str]:
        return list(SORA_MODELS)

    def default_model(self) -> str:
        return "sora-2"

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if model in SORA_MODELS:
            return Capabilities(
                modes=("t2v", "i2v"), default_size=(720, 1280), sizes=SORA_MODELS[model], durations=(4.0, 8.0, 12.0),
                default_fps=24.0, negative_prompt=False, seed=False, max_prompt_chars=5000,
                notes="seconds 4, 8 or 12; no seed, negative prompt or webhook field",
            )  # fmt: skip
        # a compatible server's own model (e.g. another Kinema server's "builtin"): the server checks it
        return Capabilities(modes=("t2v", "i2v"), default_size=(1280, 720), min_size=8, max_size=4096,
                            default_frames=96, default_fps=24.0, negative_prompt=False,
                            notes="a compatible server's model; the server validates sizes and lengths")  # fmt: skip

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        openai = require_module("openai", "cloud", feature="the openai backend")
        # max_retries=0: a hidden retry of POST /videos could pay for a second generation; the loop retries polls
        base = self._base_url
        problem = _base_url_problem(base)
        if problem:
            raise BackendUnavailable(self.name, problem)
        return openai.OpenAI(api_key=self.api_key("OPENAI_API_KEY"), base_url=base, max_retries=0,
                             timeout=loop.request_timeout)  # fmt: skip

    _base_url: str | None = None

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        # the server for this call: options.base_url, else the environment (read per call, never cached)
        given = params.options.get("base_url")
        clone = copy.copy(self)  # one backend object serves concurrent calls: the URL travels with this call only
        clone._base_url = (given if isinstance(given, str) else os.environ.get(BASE_URL_VAR) or "").rstrip("/")
        return RemoteBackend.generate(clone, params, ctx)

    def submit(self, client: Any, params: GenerationParams,
               token: str) -> tuple[str, dict[str, Any], TaskStatus | None]:  # fmt: skip
        kwargs: dict[str, Any] = {
            "prompt": params.prompt, "model": params.model, "seconds": str(int(round(params.duration))),
            "size": f"{params.width}x{params.height}",
        }  # fmt: skip
        if params.mode == "i2v" and params.image is not None:
            # the reference image must match the requested size
            kwargs["input_reference"] = ("input.png", encode_png(params.image, (params.width, params.height)),
                                         "image/png")  # fmt: skip
        video = _quiet(lambda: client.videos.create(**kwargs))
        return video.id, {}, self._status(video.model_dump(), None)

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        raw = _quiet(lambda: client.videos.with_raw_response.retrieve(task_id))
        return self._status(json.loads(raw.text), raw.headers.get("openai-poll-after-ms"))

    def _status(self, data: dict[str, Any], poll_after_ms: str | None) -> TaskStatus:
        raw = str(data.get("status"))
        error = data.get("error") or {}
        progress = data.get("progress")
        return TaskStatus(
            status=_STATUS.get(raw, "in_progress"), raw_status=raw,
            progress=float(progress) / 100 if isinstance(progress, int | float) else None,
            error_code=error.get("code") if isinstance(error, dict) else None,
            error_message=error.get("message") if isinstance(error, dict) else None,
            poll_after=float(poll_after_ms) / 1000 if poll_after_ms else None,
            data={"expires_at": data.get("expires_at")},
        )  # fmt: skip

    def download(self, client: Any, task_id: str, info: dict[str, Any], status: TaskStatus, dest: Path,
                 loop: LoopOptions) -> None:  # fmt: skip
        # not a signed URL: an authenticated endpoint, so there is no URL to expire; the SDK fetches it
        content = _quiet(lambda: client.videos.download_content(task_id, variant="video"))
        dest.write_bytes(content.content)

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return stainless_error(self.provider, exc) or super().translate_error(exc)


def _quiet(call: Callable[[], Any]) -> Any:
    """Run an SDK videos call without its shutdown DeprecationWarning: the methods are deprecated because OpenAI's
    own service shut down, and this backend only ever calls a compatible server (its base URL is required)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return call()
