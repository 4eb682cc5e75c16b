"""Kling's official API (reference/provider-apis.md §5), over httpx with a fresh JWT per request (there is no
official Python SDK).

``POST /v1/videos/text2video`` (or ``image2video``) returns ``data.task_id``; ``GET /v1/videos/<family>/{task_id}``
is polled (``submitted`` -> queued, ``processing`` -> in_progress, ``succeed`` -> completed, ``failed`` with
``task_status_msg``). Every answer is an envelope ``{code, message, request_id, data}``: code 0 is success; 1300-1301
are content-safety refusals, 1302-1303 rate / concurrency limits, 1000-1004 authentication; HTTP 429 with
1100-1102 (account problem, arrears, resource pack used up) or 1304 (IP whitelist) is an account error, reported at
once and never retried. ``duration`` is a string ("5", "10"); ``mode`` is ``std`` (720p) or ``pro`` (1080p). Every
create carries the generation's client token as ``external_task_id``, by which the task can be queried when the
create's answer was lost.

Keyframes (``last_image``) go as ``image_tail`` on ``image2video`` (with ``image`` as the first frame), on the
models, modes and durations Kling's capability map lists; reference images go to ``POST /v1/videos/multi-image2video``
as ``image_list`` (kling-v1-6 only, up to 4 images), polled at ``GET /v1/videos/multi-image2video/{id}``.

Keys: ``KLING_ACCESS_KEY`` and ``KLING_SECRET_KEY`` (the JWT is HS256 with ``iss`` = access key, ``exp`` = now + 30
min, ``nbf`` = now - 5 s). Base URL: ``KINEMA_KLING_BASE_URL`` (default the global ``https://api-singapore.klingai.com``;
China is ``https://api-beijing.klingai.com``).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="kling", model="kling-v2-6", duration=5)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ContentRejected, InvalidRequest, KinemaError, ProviderError
from ..request import VideoRequest
from .base import Capabilities, GenerationParams
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    encode_png,
    env_base_url,
    http_error,
    known_ratio,
    ratio_sizes,
)

__all__ = ["KlingBackend", "KLING_MODELS"]

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
#: model -> allowed durations (seconds)
KLING_MODELS: dict[str, tuple[float, ...]] = {
    "kling-v1": (5.0, 10.0),
    "kling-v1-6": (5.0, 10.0),
    "kling-v2-master": (5.0, 10.0),
    "kling-v2-1-master": (5.0, 10.0),
    "kling-v2-5-turbo": (5.0, 10.0),
    "kling-v2-6": (5.0, 10.0),
    "kling-v3": tuple(float(d) for d in range(3, 16)),
}
KLING_RATIOS = ("16:9", "9:16", "1:1")


@dataclass(frozen=True)
class KlingKeyframes:
    """Where a model takes ``image_tail``: its modes (std 720p / pro 1080p), durations, and whether a last frame
    may come without a first one ("end frame" in the capability map)."""

    modes: tuple[str, ...]
    durations: tuple[float, ...]
    last_alone: bool = False


#: image2video ``image_tail`` (Kling API docs, "Capability Map" and "Image to Video", as copied in
#: inference-sh/grid api/klingai/docs/01-capabilities-map.md and 04-video-image2video.md [DOC via 3P]): kling-v1 std
#: and pro at 5 s; kling-v1-6 pro (also a last frame alone); kling-v2-5-turbo and kling-v2-6 pro (v2-6 without sound).
#: kling-v2-master, kling-v2-1-master and kling-v3 list no start/end frames there.
KLING_KEYFRAMES: dict[str, KlingKeyframes] = {
    "kling-v1": KlingKeyframes(("std", "pro"), (5.0,)),
    "kling-v1-6": KlingKeyframes(("pro",), (5.0, 10.0), last_alone=True),
    "kling-v2-5-turbo": KlingKeyframes(("pro",), (5.0, 10.0)),
    "kling-v2-6": KlingKeyframes(("pro",), (5.0, 10.0)),
}
#: multi-image2video: model_name "kling-v1-6" only, image_list of at most 4 (Kling API docs "Multi-Image to Video",
#: as copied in cuijinyu/new-api vitepress-docs/kling/multi-image-video.md [DOC via 3P])
KLING_REFERENCES = {"kling-v1-6": 4}
#: the model a request without one gets for references (the default kling-v2-6 takes none)
REFERENCES_MODEL = "kling-v1-6"
#: the options each endpoint takes (multi-image2video has no cfg_scale, sound or camera_control; Kling lists start/end
#: frames and camera control as mutually exclusive on image2video)
_MODE_OPTIONS = {"references": (), "keyframes": ("cfg_scale", "sound")}
_ACCOUNT_CODES = {
    1100: "account problem",
    1101: "account in arrears (top up the balance)",
    1102: "resource pack used up or expired",
    1304: "this IP is not on the account's IP whitelist",
}
_STATUS = {"submitted": "queued", "processing": "in_progress", "succeed": "completed", "failed": "failed"}


class KlingBackend(RemoteBackend):
    name = "kling"
    provider = "kling"
    description = "Kling official API (kling-v1 ... kling-v3), per-request JWT"
    env_keys = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY")
    requires = (("httpx", "cloud"), ("jwt", "cloud"))
    recommended_poll_interval = 5.0
    max_poll_interval = 30.0
    provider_options = ("cfg_scale", "sound", "camera_control")

    def models(self) -> list[str]:
        return list(KLING_MODELS)

    def default_model(self) -> str:
        return "kling-v2-6"

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if model not in KLING_MODELS:
            raise InvalidRequest(
                "model", f"{model!r} is not a Kling video model", value=model, allowed=", ".join(KLING_MODELS)
            )
        modes = (
            ("t2v", "i2v")
            + (("keyframes",) if model in KLING_KEYFRAMES else ())
            + (("references",) if model in KLING_REFERENCES else ())
        )
        notes = "720p is mode std, 1080p is mode pro"
        if model in KLING_KEYFRAMES:
            kf = KLING_KEYFRAMES[model]
            notes += (
                f"; keyframes (image_tail) in mode {'/'.join(kf.modes)} at "
                f"{'/'.join(f'{d:g}' for d in kf.durations)} s"
            )
        return Capabilities(
            modes=modes,
            max_references=KLING_REFERENCES.get(model, 0),
            default_size=(1280, 720),
            sizes=ratio_sizes(KLING_RATIOS, (720, 1080)),
            aspect_ratios=KLING_RATIOS,
            durations=KLING_MODELS[model],
            default_fps=24.0,
            max_prompt_chars=2500,
            notes=notes,
        )

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        if request.model is None and request.mode == "references":  # the default kling-v2-6 takes none
            request = request.model_copy(update={"model": REFERENCES_MODEL})
        model = request.model or self.default_model()
        kf = KLING_KEYFRAMES.get(model)
        sized = any(getattr(request, f) is not None for f in ("width", "height", "aspect_ratio", "resolution"))
        if request.mode == "keyframes" and kf is not None and kf.modes == ("pro",) and not sized:
            # the default 720p is mode std, in which this model takes no last frame: 1080p is mode pro
            request = request.model_copy(update={"resolution": "1080p"})
        return super().resolve(request, seed)

    def check(self, params: GenerationParams) -> None:
        allowed = _MODE_OPTIONS.get(params.mode)
        if allowed is not None:
            for key in ("cfg_scale", "sound", "camera_control"):
                if key in params.options and key not in allowed:
                    raise InvalidRequest(
                        f"options.{key}",
                        f"is not taken by Kling's {_family(params.mode)} endpoint",
                        allowed=", ".join(allowed) or "none",
                    )
        if params.mode == "keyframes":
            self._check_keyframes(params)
        if "cfg_scale" in params.options:
            value = params.options["cfg_scale"]
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidRequest("options.cfg_scale", f"{value!r} is outside 0..1", value=value, allowed="0 to 1")
            if str(params.model).startswith("kling-v2"):
                raise InvalidRequest(
                    "options.cfg_scale", f"is not supported by {params.model!r}", allowed="kling-v1, kling-v1-6"
                )
        if params.options.get("sound") not in (None, "on", "off"):
            raise InvalidRequest("options.sound", f"{params.options['sound']!r} is not on or off", allowed="on, off")

    @staticmethod
    def _check_keyframes(params: GenerationParams) -> None:
        kf = KLING_KEYFRAMES[str(params.model)]
        mode = _kling_mode(params)
        where = f"Kling {params.model!r}"
        if mode not in kf.modes:
            raise InvalidRequest(
                "resolution",
                f"{where} takes a last frame only in mode {' or '.join(kf.modes)} "
                f"(1080p is pro, 720p std), not {mode}",
                value=f"{params.width}x{params.height}",
                allowed="1080p" if kf.modes == ("pro",) else "720p, 1080p",
            )
        if not any(abs(params.duration - d) < 1e-6 for d in kf.durations):
            raise InvalidRequest(
                "duration",
                f"{where} takes a last frame only at {', '.join(f'{d:g}s' for d in kf.durations)}",
                value=params.duration,
                allowed=", ".join(f"{d:g}s" for d in kf.durations),
            )
        if params.image_source is None and not kf.last_alone:
            raise InvalidRequest(
                "image",
                f"{where} needs the first frame (image) with the last one",
                allowed="image and last_image together",
            )
        if params.model == "kling-v2-6" and params.options.get("sound") == "on":
            raise InvalidRequest(
                "options.sound", f"{where} makes first/last-frame clips without sound", value="on", allowed="off"
            )

    # -- transport ------------------------------------------------------------------------------------------------
    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        httpx = require_module("httpx", "cloud", feature="the kling backend")
        require_module("jwt", "cloud", feature="the kling backend")
        self.api_key("KLING_ACCESS_KEY")
        self.api_key("KLING_SECRET_KEY")
        base = env_base_url("KINEMA_KLING_BASE_URL", default=DEFAULT_BASE_URL)
        return httpx.Client(base_url=base, timeout=loop.request_timeout)

    def _token(self) -> str:
        import jwt

        now = int(time.time())
        payload = {"iss": self.api_key("KLING_ACCESS_KEY"), "exp": now + 1800, "nbf": now - 5}
        return str(
            jwt.encode(
                payload, self.api_key("KLING_SECRET_KEY"), algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"}
            )
        )

    def _request(self, client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # a fresh JWT on every request: they expire after 30 minutes, and a generation can take longer
        resp = client.request(method, path, json=body, headers={"Authorization": f"Bearer {self._token()}"})
        try:
            data = resp.json()
        except ValueError:
            data = {}
        code = data.get("code") if isinstance(data, dict) else None
        if resp.status_code >= 400 or (code not in (None, 0)):
            raise self._envelope_error(resp.status_code, data if isinstance(data, dict) else {}, resp.headers)
        return data.get("data") or {}

    def _envelope_error(self, status: int, data: dict[str, Any], headers: Any) -> KinemaError:
        code = data.get("code")
        message = str(data.get("message") or f"HTTP {status}")
        code_s = str(code) if code is not None else None
        if isinstance(code, int) and 1300 <= code <= 1301:
            return ContentRejected(f"kling refused the request on content grounds (code {code}): {message}")
        if isinstance(code, int) and (1100 <= code <= 1102 or code == 1304):
            # HTTP 429 too, but an account problem, not a rate limit: waiting does not help (Kling API docs,
            # error codes: 1100 account exception, 1101 account in arrears, 1102 resource pack used up or
            # expired, 1304 IP not on the whitelist)
            what = _ACCOUNT_CODES.get(code, "account problem")
            return ProviderError(
                f"kling refused the request: {what} (HTTP {status}, code {code}): {message}; fix "
                f"it in the Kling developer console, retrying will not help",
                provider=self.provider,
                provider_code=code_s,
                provider_message=message,
                status_code=status,
            )
        if isinstance(code, int) and code in (1302, 1303):
            status = 429
        if isinstance(code, int) and 1000 <= code <= 1004:
            return ProviderError(
                f"kling rejected the credentials (HTTP {status}, code {code}): {message} "
                f"(check KLING_ACCESS_KEY and KLING_SECRET_KEY)",
                provider=self.provider,
                provider_code=code_s,
                provider_message=message,
                status_code=status,
            )
        return http_error(self.provider, status, message, code=code_s, headers=headers, moderated=False)

    # -- the loop's parts -----------------------------------------------------------------------------------------
    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        family = _family(params.mode)
        body: dict[str, Any] = {
            "model_name": params.model,
            "prompt": params.prompt,
            "external_task_id": token,
            "mode": _kling_mode(params),
            "aspect_ratio": known_ratio(params.width, params.height, KLING_RATIOS),
            "duration": str(int(round(params.duration))),
        }
        if params.negative_prompt:
            body["negative_prompt"] = params.negative_prompt
        for key in ("cfg_scale", "sound", "camera_control"):
            if key in params.options:
                body[key] = params.options[key]
        if params.image is not None:
            body["image"] = _image_value(params.image_source, params.image)
        if params.mode == "keyframes":
            assert params.last_image is not None
            body["image_tail"] = _image_value(params.last_image_source, params.last_image)
        if params.mode == "references":
            body["image_list"] = [
                {"image": _image_value(source, image)}
                for source, image in zip(params.reference_sources, params.references, strict=True)
            ]
        callback = self.callback_url()
        if callback:  # Kling POSTs the task to it on every status change (unsigned: only a hint)
            body["callback_url"] = callback
        data = self._request(client, "POST", f"/v1/videos/{family}", body)
        task_id = str(data.get("task_id") or "")
        if not task_id:
            raise ProviderError("kling accepted the request but returned no task_id", provider=self.provider)
        return task_id, {"family": family}, self._status(data)

    def find_submitted(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None] | None:
        # the single-task query takes the task_id or the external_task_id (Kling API docs, "Query Task (Single)")
        family = _family(params.mode)
        try:
            data = self._request(client, "GET", f"/v1/videos/{family}/{token}")
        except ProviderError as exc:
            if exc.status_code == 404 or exc.provider_code == "1203":
                return None
            raise
        task_id = str(data.get("task_id") or "")
        return (task_id, {"family": family}, self._status(data)) if task_id else None

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        family = info.get("family") or _family(str(info.get("mode")))
        return self._status(self._request(client, "GET", f"/v1/videos/{family}/{task_id}"))

    def _status(self, data: dict[str, Any]) -> TaskStatus:
        raw = str(data.get("task_status"))
        videos = (data.get("task_result") or {}).get("videos") or []
        units = data.get("final_unit_deduction")
        return TaskStatus(
            status=_STATUS.get(raw, "in_progress"),
            raw_status=raw,
            output_urls=[v["url"] for v in videos if isinstance(v, dict) and v.get("url")],
            error_message=data.get("task_status_msg") if raw == "failed" else None,
            cost={"units": float(units)} if units not in (None, "") else None,
        )

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return super().translate_error(exc)


_FAMILIES = {"i2v": "image2video", "keyframes": "image2video", "references": "multi-image2video"}


def _family(mode: str) -> str:
    """The endpoint family (the path after /v1/videos/) of a mode."""
    return _FAMILIES.get(mode, "text2video")


def _kling_mode(params: GenerationParams) -> str:
    """Kling's ``mode``: pro renders 1080p, std 720p."""
    return "pro" if min(params.width, params.height) >= 1080 else "std"


def _image_value(source: Any, image: Any) -> str:
    """An image as Kling takes it: the URL as given, else raw base64 (no ``data:`` prefix, which Kling refuses)."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return source
    return base64.b64encode(encode_png(image)).decode("ascii")
