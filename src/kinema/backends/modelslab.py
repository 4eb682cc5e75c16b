"""ModelsLab's v6 video API (reference/provider-apis.md §8), over httpx (its SDK, modelslab_py, is not used: its
fetch loop sleeps 60 s and never stops on an error).

Every call is a ``POST`` with the key in the JSON body (``"key"``, no auth header): ``/v6/video/text2video`` or
``/v6/video/img2video`` answers ``status`` success (with ``output`` URLs), processing (with ``id`` and ``eta``)
or error (with ``message``, often with HTTP 200); ``/v6/video/fetch/{id}`` is polled. Kinema sends a ``track_id``
(the id ModelsLab's webhooks carry) and reports ``eta`` in its progress events.

Limits (the contract's): width and height at most 512, at most 25 frames, fps at most 16, at most 50 steps,
guidance 0-8. Image-to-video takes the first frame as a public URL (``init_image``).

Key: ``MODELSLAB_API_KEY``; base URL: ``KINEMA_MODELSLAB_BASE_URL`` (default ``https://modelslab.com/api``).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox in snow", backend="modelslab", model="cogvideox", width=512, height=512)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest, KinemaError, ProviderError
from ..request import VideoRequest
from .base import Capabilities, GenerationParams
from .remote import LoopOptions, RemoteBackend, TaskStatus, env_base_url, http_error, looks_moderated

__all__ = ["ModelsLabBackend", "MODELSLAB_T2V", "MODELSLAB_I2V"]

DEFAULT_BASE_URL = "https://modelslab.com/api"
MODELSLAB_T2V = ("cogvideox", "wanx", "ltx")
MODELSLAB_I2V = ("svd", "wan2.2", "ltx-2.3")
_STATUS = {"processing": "in_progress", "success": "completed", "error": "failed", "failed": "failed"}


class ModelsLabBackend(RemoteBackend):
    name = "modelslab"
    provider = "modelslab"
    description = "ModelsLab v6 text2video / img2video (cogvideox, wanx, ltx, svd...)"
    env_keys = ("MODELSLAB_API_KEY",)
    requires = (("httpx", "cloud"),)
    recommended_poll_interval = 5.0
    max_poll_interval = 30.0
    provider_options = ("output_type", "temp")

    def models(self) -> list[str]:
        return list(MODELSLAB_T2V + MODELSLAB_I2V)

    def default_model(self) -> str:
        return "cogvideox"

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        if request.model is None and request.mode == "i2v":  # the default model is a text-to-video one
            request = request.model_copy(update={"model": MODELSLAB_I2V[0]})
        return super().resolve(request, seed)

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if model not in MODELSLAB_T2V + MODELSLAB_I2V:
            raise InvalidRequest(
                "model",
                f"{model!r} is not a ModelsLab v6 video model",
                value=model,
                allowed=f"text-to-video: {', '.join(MODELSLAB_T2V)}; image-to-video: {', '.join(MODELSLAB_I2V)}",
            )
        mode = "t2v" if model in MODELSLAB_T2V else "i2v"
        return Capabilities(
            modes=(mode,),
            default_size=(512, 512),
            size_multiple=8,
            min_size=64,
            max_size=512,
            default_frames=16,
            min_frames=1,
            max_frames=25,
            default_fps=8.0,
            fps=tuple(float(f) for f in range(1, 17)),
            default_steps=20,
            max_steps=50,
            default_guidance=7.0,
            max_guidance=8.0,
            notes="at most 512x512, 25 frames, 16 fps, 50 steps, guidance 8",
        )

    def check(self, params: GenerationParams) -> None:
        if params.mode == "i2v" and not (
            isinstance(params.image_source, str) and params.image_source.startswith(("http://", "https://"))
        ):
            raise InvalidRequest(
                "image",
                "ModelsLab takes the first frame as a public URL (init_image)",
                value=str(params.image_source)[:80],
                allowed="an http(s) URL",
            )
        if params.options.get("output_type", "mp4") not in ("mp4", "gif"):
            raise InvalidRequest(
                "options.output_type", f"{params.options['output_type']!r} is not offered", allowed="mp4, gif"
            )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        httpx = require_module("httpx", "cloud", feature="the modelslab backend")
        self.api_key("MODELSLAB_API_KEY")
        base = env_base_url("KINEMA_MODELSLAB_BASE_URL", default=DEFAULT_BASE_URL)
        return httpx.Client(base_url=base, timeout=loop.request_timeout)

    def _post(self, client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = {"key": self.api_key("MODELSLAB_API_KEY"), **body}
        resp = client.post(path, json=payload, headers={"X-Requested-With": "modelslab-py"})
        try:
            data = resp.json()
        except ValueError:
            data = {"message": resp.text[:300]}
        if resp.status_code >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise http_error(self.provider, resp.status_code, str(message or resp.text[:300]), headers=resp.headers)
        return data if isinstance(data, dict) else {}

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        # the client token as track_id (what ModelsLab's webhooks carry); ModelsLab documents no lookup by it, so
        # a lost submit answer is reported as "the task may exist" rather than sent again
        track_id = token
        body: dict[str, Any] = {
            "model_id": params.model,
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt or "",
            "seed": params.seed,
            "width": params.width,
            "height": params.height,
            "num_frames": params.num_frames,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
            "fps": int(params.fps),
            "output_type": params.options.get("output_type", "mp4"),
            "track_id": track_id,
        }
        if "temp" in params.options:
            body["temp"] = bool(params.options["temp"])
        path = "/v6/video/text2video"
        if params.mode == "i2v":
            path = "/v6/video/img2video"
            body["init_image"] = params.image_source
        callback = self.callback_url()
        if callback:  # ModelsLab POSTs the job (with track_id) to it (unsigned: only a hint)
            body["webhook"] = callback
        data = self._post(client, path, body)
        status = self._status(data)
        if data.get("id") is None:
            # refused before a task existed (bad key, bad input, moderation): nothing to poll or resume
            message = str(data.get("message") or data.get("messege") or "no reason given")
            if looks_moderated(message):
                raise http_error(self.provider, 400, message, moderated=True)
            raise http_error(self.provider, 401 if "key" in message.lower() else 400, message, moderated=False)
        return str(data["id"]), {"track_id": track_id}, status

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        data = self._post(client, f"/v6/video/fetch/{task_id}", {})
        if data.get("status") == "error" and not data.get("id") and "not found" in str(data.get("message")).lower():
            raise ProviderError(
                f"modelslab does not know request {task_id}: {data.get('message')}",
                provider=self.provider,
                provider_code="not_found",
            )
        return self._status(data)

    def _status(self, data: dict[str, Any]) -> TaskStatus:
        raw = str(data.get("status"))
        output = [u for u in data.get("output") or [] if isinstance(u, str)]
        eta = data.get("eta")
        seconds = data.get("generationTime")  # ModelsLab reports seconds of generation, no money
        return TaskStatus(
            status=_STATUS.get(raw, "in_progress"),
            raw_status=raw,
            output_urls=output,
            cost={"generation_time": float(seconds)} if isinstance(seconds, int | float) else None,
            eta=float(eta) if isinstance(eta, int | float) else None,
            error_message=str(data.get("message")) if raw in ("error", "failed") else None,
        )

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return super().translate_error(exc)
