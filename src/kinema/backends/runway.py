"""Runway through the official ``runwayml`` SDK (reference/provider-apis.md §1).

``POST /v1/text_to_video`` or ``/v1/image_to_video`` returns a task id; ``GET /v1/tasks/{id}`` is polled
(PENDING / THROTTLED -> queued, RUNNING -> in_progress, SUCCEEDED, FAILED, CANCELLED) no more often than every 5 s,
as Runway asks; the output URLs expire within 24-48 h and a new GET returns fresh ones. ``ratio`` is in pixels
("1280:720"), so Kinema's width x height maps onto it directly. Failure codes ``SAFETY.*`` are moderation.

Key: ``RUNWAYML_API_SECRET``; base URL: ``RUNWAYML_BASE_URL`` (the SDK's own variable). Cost is reported in credits
($0.01 each).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="runway", model="gen4.5", duration=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, KinemaError
from .base import Capabilities, GenerationParams
from .remote import LoopOptions, RemoteBackend, TaskStatus, fitted_data_uri, ratio_in, stainless_error

__all__ = ["RunwayBackend", "RUNWAY_MODELS"]

_GEN4_TURBO_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
_VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")


@dataclass(frozen=True)
class RunwayModel:
    t2v_ratios: tuple[str, ...]  # empty: no text-to-video
    i2v_ratios: tuple[str, ...]
    durations: tuple[float, ...]
    moderation: bool = False  # takes contentModeration
    veo: bool = False  # takes negativePrompt / audio


RUNWAY_MODELS: dict[str, RunwayModel] = {
    "gen4.5": RunwayModel(
        ("1280:720", "720:1280"), _GEN4_TURBO_RATIOS, tuple(float(d) for d in range(2, 11)), moderation=True
    ),  # fmt: skip
    "veo3.1": RunwayModel(_VEO_RATIOS, _VEO_RATIOS, (4.0, 6.0, 8.0), veo=True),
    "veo3.1_fast": RunwayModel(_VEO_RATIOS, _VEO_RATIOS, (4.0, 6.0, 8.0), veo=True),
    "gen4_turbo": RunwayModel((), _GEN4_TURBO_RATIOS, tuple(float(d) for d in range(2, 11)), moderation=True),
}
#: models the SDK dropped (runwayml/sdk-python, types/image_to_video_create_params.py since 5.x; gen3a_turbo is
#: gone from every create overload in 5.24.0): refused locally with the reason
RETIRED_MODELS = {"gen3a_turbo": "removed from Runway's API (the runwayml SDK dropped it); use gen4_turbo or gen4.5",
                  "veo3": "removed from Runway's API (the runwayml SDK 5.x dropped it); use veo3.1"}  # fmt: skip
#: Runway accepts data: URIs "up to 5MB" (runwayml SDK, types/image_to_video_create_params.py, promptImage)
DATA_URI_LIMIT = 5_000_000  # read as 10^6 bytes, the stricter reading
_STATUS = {"PENDING": "queued", "THROTTLED": "queued", "RUNNING": "in_progress", "SUCCEEDED": "completed",
           "FAILED": "failed", "CANCELLED": "cancelled"}  # fmt: skip


class RunwayBackend(RemoteBackend):
    name = "runway"
    provider = "runway"
    description = "Runway (gen4.5, veo3.1, gen4_turbo...) via the runwayml SDK"
    env_keys = ("RUNWAYML_API_SECRET",)
    requires = (("runwayml", "cloud"),)
    recommended_poll_interval = 5.0  # "do not expect status updates more often than every 5 s"
    max_poll_interval = 30.0
    provider_options = ("audio", "public_figure_threshold")

    def models(self) -> list[str]:
        return list(RUNWAY_MODELS)

    def default_model(self) -> str:
        return "gen4.5"

    def _model(self, model: str | None) -> RunwayModel:
        model = model or self.default_model()
        if model in RETIRED_MODELS:
            raise InvalidRequest("model", f"{model!r} is {RETIRED_MODELS[model]}", value=model,
                                 allowed=", ".join(RUNWAY_MODELS))  # fmt: skip
        if model not in RUNWAY_MODELS:
            raise InvalidRequest("model", f"{model!r} is not a Runway video model Kinema knows", value=model,
                                 allowed=", ".join(RUNWAY_MODELS))  # fmt: skip
        return RUNWAY_MODELS[model]

    def capabilities(self, model: str | None = None) -> Capabilities:
        m = self._model(model)
        ratios = tuple(dict.fromkeys(m.t2v_ratios + m.i2v_ratios))
        sizes = tuple(ratio_in(r) for r in ratios)
        modes = (("t2v",) if m.t2v_ratios else ()) + ("i2v",)
        return Capabilities(
            modes=modes, default_size=sizes[0], sizes=sizes, durations=m.durations, default_fps=24.0,
            negative_prompt=m.veo, max_prompt_chars=1000,
            notes="ratio is in pixels; output URLs expire in 24-48 h",
        )  # fmt: skip

    def check(self, params: GenerationParams) -> None:
        m = self._model(params.model)
        ratio = f"{params.width}:{params.height}"
        allowed = m.t2v_ratios if params.mode == "t2v" else m.i2v_ratios
        if ratio not in allowed:
            kind = "text-to-video" if params.mode == "t2v" else "image-to-video"
            raise InvalidRequest("size", f"{params.width}x{params.height} is not offered by Runway {params.model!r} "
                                 f"for {kind}", value=ratio,
                                 allowed=", ".join(r.replace(":", "x") for r in allowed))  # fmt: skip
        if "audio" in params.options and not m.veo:
            raise InvalidRequest("options.audio", f"only the veo models take audio, not {params.model!r}")

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        runwayml = require_module("runwayml", "cloud", feature="the runway backend")
        # max_retries=0: the SDK would otherwise retry a POST that may already have been accepted (and paid)
        return runwayml.RunwayML(api_key=self.api_key("RUNWAYML_API_SECRET"),
                                 base_url=os.environ.get("RUNWAYML_BASE_URL") or None, max_retries=0,
                                 timeout=loop.request_timeout)  # fmt: skip

    def submit(self, client: Any, params: GenerationParams,
               token: str) -> tuple[str, dict[str, Any], TaskStatus | None]:  # fmt: skip
        m = self._model(params.model)
        kwargs: dict[str, Any] = {"model": params.model, "ratio": f"{params.width}:{params.height}",
                                  "duration": int(round(params.duration)), "seed": params.seed}  # fmt: skip
        if params.prompt:
            kwargs["prompt_text"] = params.prompt
        extra: dict[str, Any] = {}
        if m.veo:
            if params.negative_prompt:
                extra["negativePrompt"] = params.negative_prompt
            if "audio" in params.options:
                extra["audio"] = bool(params.options["audio"])
        if m.moderation and "public_figure_threshold" in params.options:
            kwargs["content_moderation"] = {"public_figure_threshold": params.options["public_figure_threshold"]}
        if params.mode == "i2v":
            assert params.image is not None
            # a local photo goes as a data: URI, re-encoded (JPEG, then smaller) to fit Runway's 5 MB
            image = (
                params.image_source
                if _is_https(params.image_source)
                else fitted_data_uri(params.image, DATA_URI_LIMIT)
            )
            task = client.image_to_video.create(prompt_image=image, extra_body=extra or None, **kwargs)
        else:
            task = client.text_to_video.create(extra_body=extra or None, **kwargs)
        return task.id, {}, None

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        raw = client.tasks.with_raw_response.retrieve(task_id)
        data = json.loads(raw.text() if callable(raw.text) else raw.text)
        status = str(data.get("status"))
        cost = data.get("cost") or data.get("estimatedCost")
        credits = cost.get("credits") if isinstance(cost, dict) else None
        cost_info = None
        if credits is not None:  # USD (at $0.01 a credit) is added by prices.with_estimate
            cost_info = {"credits": credits, "credits_estimated": "cost" not in data}
        return TaskStatus(
            status=_STATUS.get(status, "in_progress"), raw_status=status, progress=data.get("progress"),
            output_urls=[u for u in data.get("output") or [] if isinstance(u, str)], cost=cost_info,
            error_code=data.get("failureCode"), error_message=data.get("failure"),
            moderated=True if str(data.get("failureCode") or "").upper().startswith(
                ("SAFETY.", "INPUT_PREPROCESSING.SAFETY")) else None,
        )  # fmt: skip

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # DELETE /v1/tasks/{id} cancels a running task (runwayml SDK resources/tasks.py ``delete``); 204, no body
        client.tasks.delete(task_id)
        return "DELETE /v1/tasks/{id}: 204"

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return stainless_error(self.provider, exc) or super().translate_error(exc)


def _is_https(source: Any) -> bool:
    return isinstance(source, str) and source.startswith("https://")
