"""The ``/v1/videos`` job API (OpenAI's shape) through the official ``openai`` SDK.

OpenAI's own Videos API (Sora) shut down on 2026-09-24 (openai-python ``resources/videos.py`` marks every
``client.videos`` method "scheduled to permanently shut down on September 24, 2026"), so this backend is for any
server that speaks the same shape: another Kinema server, vLLM-Omni, SGLang Diffusion, FastVideo. The server must
be named: ``KINEMA_OPENAI_VIDEOS_BASE_URL`` or ``options.base_url`` (for example ``http://gpu-box:8000/v1``); without
one the backend reports itself unusable, and OpenAI's own host is refused. ``OPENAI_API_KEY`` is the server's key;
a server that answers ``GET /models`` without one (a Kinema server started with ``--no-auth``) needs none.

What the server's models accept comes from its ``GET /models`` when it lists capabilities (a Kinema server does:
sizes, frame rule, fps), and its default model is used when the request names none, so ``backend="openai"`` alone
against a Kinema server makes the server's default clip (128x128 with the built-in model) instead of asking for
Sora's 1280x720.

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
import dataclasses
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendUnavailable, InvalidRequest, KinemaError
from ..request import VideoRequest
from .base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams, module_available
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
_STATUS = {
    "queued": "queued",
    "in_progress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


BASE_URL_VAR = "KINEMA_OPENAI_VIDEOS_BASE_URL"
_RETIRED = (
    "OpenAI's own Videos (Sora) API shut down on 2026-09-24; this backend talks to a compatible /v1/videos "
    f"server (vLLM-Omni, SGLang Diffusion, a Kinema server): set {BASE_URL_VAR} or options.base_url to it"
)


def _base_url_problem(url: str | None) -> str | None:
    """Why ``url`` cannot be used as the /v1/videos server, or None."""
    if not url:
        return (
            f"no server named: set {BASE_URL_VAR} (or options.base_url) to a /v1/videos server, e.g. "
            "http://gpu-box:8000/v1 (OpenAI's own Sora API is retired)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    host = parts.hostname.lower()
    if host == "openai.com" or host.endswith(".openai.com"):
        return _RETIRED
    return None


KEY_VAR = "OPENAI_API_KEY"
#: seconds a server's answer to GET /models is reused: planning asks for every request
SERVER_INFO_SECONDS = 30.0
#: the stand-in key sent to a server that needs none (the SDK refuses to start without a key)
_NO_KEY = "no-key-needed"


@dataclass(frozen=True)
class ServerInfo:
    """What a /v1/videos server said to ``GET {base_url}/models``."""

    url: str
    #: the HTTP status; None when the server was not reached
    status: int | None = None
    #: why the server was not reached
    error: str | None = None
    #: the capabilities of each model id the server lists with them (a Kinema server does; others list ids only)
    models: dict[str, Capabilities] = field(default_factory=dict)
    #: the model the server marks as its default
    default_model: str | None = None


_server_cache: dict[tuple[str, str], tuple[float, ServerInfo]] = {}
_server_lock = threading.Lock()


def server_info(url: str, key: str | None, timeout: float = 5.0) -> ServerInfo:
    """Ask ``GET {url}/models`` (with ``key`` when there is one); answers are kept :data:`SERVER_INFO_SECONDS`."""
    # the key is part of the cache key (a server may list more to a key), as a digest so no second copy is kept
    cache_key = (url, hashlib.sha256((key or "").encode()).hexdigest())
    with _server_lock:
        hit = _server_cache.get(cache_key)
        if hit is not None and time.monotonic() - hit[0] < SERVER_INFO_SECONDS:
            return hit[1]
    info = _ask_server(url, key, timeout)
    with _server_lock:
        _server_cache[cache_key] = (time.monotonic(), info)
    return info


def _ask_server(url: str, key: str | None, timeout: float) -> ServerInfo:
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url.rstrip("/") + "/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - an http(s) URL, checked
            status, body = resp.status, resp.read(4 * 2**20)
    except urllib.error.HTTPError as exc:
        return ServerInfo(url=url, status=exc.code)
    except (OSError, ValueError) as exc:
        return ServerInfo(url=url, error=str(getattr(exc, "reason", None) or exc))
    try:
        entries = json.loads(body).get("data") or []
    except (ValueError, AttributeError):
        return ServerInfo(url=url, status=status)
    models: dict[str, Capabilities] = {}
    default = None
    for entry in entries if isinstance(entries, list) else []:
        caps = _capabilities(entry.get("capabilities")) if isinstance(entry, dict) else None
        if caps is None or not isinstance(entry.get("id"), str):
            continue
        models[entry["id"]] = caps
        if entry.get("default") is True and entry.get("usable") is not False:
            default = entry["id"]
    return ServerInfo(url=url, status=status, models=models, default_model=default)


def _capabilities(data: Any) -> Capabilities | None:
    """A Kinema server's capabilities object (``Capabilities.to_dict()``) as Capabilities; None if it is not one."""
    if not isinstance(data, dict):
        return None
    names = {f.name for f in dataclasses.fields(Capabilities)}

    def tupled(value: Any) -> Any:  # JSON arrays back to the tuples Capabilities holds
        return tuple(tupled(v) for v in value) if isinstance(value, list) else value

    try:
        caps = Capabilities(**{k: tupled(v) for k, v in data.items() if k in names})
        caps.size_rule(), caps.frame_rule()  # a malformed entry fails here, not in the middle of resolve
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    # this backend sends no negative prompt (the /v1/videos shape has none)
    return dataclasses.replace(caps, negative_prompt=False)


def _key() -> str | None:
    return os.environ.get(KEY_VAR, "").strip() or None


def _key_problem(url: str, info: ServerInfo) -> str:
    """Why the server at ``url`` cannot be used without a key: which server was asked, and which setting holds it."""
    if info.status in (401, 403):
        said = f"asks for an API key (it answered {info.status} to GET /models without one)"
    elif info.status is None:
        said = f"could not be reached to ask whether it needs an API key ({info.error})"
    else:
        said = f"answered {info.status} to GET /models without a key"
    return (
        f"the /v1/videos server at {url} {said}: set {KEY_VAR} to that server's key (this backend sends "
        f"{KEY_VAR} to whichever server {BASE_URL_VAR} or options.base_url names; on a Kinema server, "
        "'kinema keys create' makes one)"
    )


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
        for module, extra in self.requires:
            if not module_available(module):
                return Availability.no(f"extra '{extra}' not installed (pip install 'kinema[{extra}]')")
        url = os.environ.get(BASE_URL_VAR)
        problem = _base_url_problem(url)
        if problem:
            return Availability.no(problem)
        assert url is not None
        if _key() is not None:
            return Availability.ok()
        # no key: fine for a server that answers without one (a Kinema server with --no-auth); else say which
        # server was asked and which setting holds its key, not just "OPENAI_API_KEY missing"
        info = server_info(url.rstrip("/"), None)
        return Availability.ok() if info.status == 200 else Availability.no(_key_problem(url, info))

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        given = request.options.get("base_url")
        url = given if given is not None else os.environ.get(BASE_URL_VAR)
        if not isinstance(url, str) or _base_url_problem(url):
            return super().resolve(request, seed)  # check() refuses it, naming the setting
        # the server's own models and what they accept, for this call only (one backend object serves all calls)
        clone = copy.copy(self)
        clone._server = server_info(url.rstrip("/"), _key())
        return RemoteBackend.resolve(clone, request, seed)

    def check(self, params: GenerationParams) -> None:
        given = params.options.get("base_url")
        if given is not None:
            problem = _base_url_problem(given if isinstance(given, str) else repr(given))
            if problem:
                raise InvalidRequest(
                    "options.base_url", problem, value=given, allowed="the http(s) URL of a /v1/videos server"
                )
        else:
            problem = _base_url_problem(os.environ.get(BASE_URL_VAR))
            if problem:
                raise BackendUnavailable(self.name, problem)

    def models(self) -> list[str]:
        return list(SORA_MODELS)

    def default_model(self) -> str:
        server = self._server
        if server is not None and server.models and "sora-2" not in server.models:
            return server.default_model or next(iter(server.models))
        return "sora-2"

    _server: ServerInfo | None = None

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if self._server is not None and model in self._server.models:
            return self._server.models[model]
        if model in SORA_MODELS:
            return Capabilities(
                modes=("t2v", "i2v"),
                default_size=(720, 1280),
                sizes=SORA_MODELS[model],
                durations=(4.0, 8.0, 12.0),
                default_fps=24.0,
                negative_prompt=False,
                seed=False,
                max_prompt_chars=5000,
                notes="seconds 4, 8 or 12; no seed, negative prompt or webhook field",
            )
        # a compatible server's own model (e.g. another Kinema server's "builtin"): the server checks it
        return Capabilities(
            modes=("t2v", "i2v"),
            default_size=(1280, 720),
            min_size=8,
            max_size=4096,
            default_frames=96,
            default_fps=24.0,
            negative_prompt=False,
            notes="a compatible server's model; the server validates sizes and lengths",
        )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        openai = require_module("openai", "cloud", feature="the openai backend")
        # max_retries=0: a hidden retry of POST /videos could pay for a second generation; the loop retries polls
        base = self._base_url
        problem = _base_url_problem(base)
        if problem:
            raise BackendUnavailable(self.name, problem)
        assert base is not None
        key = _key()
        if key is None:
            info = server_info(base, None)
            if info.status != 200:
                raise BackendUnavailable(self.name, _key_problem(base, info))
            key = _NO_KEY  # the server answered without a key, so it checks none
        return openai.OpenAI(api_key=key, base_url=base, max_retries=0, timeout=loop.request_timeout)

    _base_url: str | None = None

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        # the server for this call: options.base_url, else the environment (read per call, never cached)
        given = params.options.get("base_url")
        clone = copy.copy(self)  # one backend object serves concurrent calls: the URL travels with this call only
        clone._base_url = (given if isinstance(given, str) else os.environ.get(BASE_URL_VAR) or "").rstrip("/")
        if not _base_url_problem(clone._base_url):
            clone._server = server_info(clone._base_url, _key())
        return RemoteBackend.generate(clone, params, ctx)

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        # OpenAI's shape takes whole seconds ("4"); a server that listed its capabilities (Kinema) takes any length,
        # and rounding would change a 3.5 s clip of its frame rule into another length
        listed = self._server is not None and params.model in self._server.models
        seconds = f"{params.duration:g}" if listed else str(int(round(params.duration)))
        kwargs: dict[str, Any] = {
            "prompt": params.prompt,
            "model": params.model,
            "seconds": seconds,
            "size": f"{params.width}x{params.height}",
        }
        if params.mode == "i2v" and params.image is not None:
            # the reference image must match the requested size
            kwargs["input_reference"] = (
                "input.png",
                encode_png(params.image, (params.width, params.height)),
                "image/png",
            )
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
            status=_STATUS.get(raw, "in_progress"),
            raw_status=raw,
            progress=float(progress) / 100 if isinstance(progress, int | float) else None,
            error_code=error.get("code") if isinstance(error, dict) else None,
            error_message=error.get("message") if isinstance(error, dict) else None,
            poll_after=float(poll_after_ms) / 1000 if poll_after_ms else None,
            data={"expires_at": data.get("expires_at")},
        )

    def download(
        self, client: Any, task_id: str, info: dict[str, Any], status: TaskStatus, dest: Path, loop: LoopOptions
    ) -> None:
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
