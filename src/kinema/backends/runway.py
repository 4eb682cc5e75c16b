"""Runway through the official ``runwayml`` SDK (reference/provider-apis.md §1).

``POST /v1/text_to_video``, ``/v1/image_to_video`` or ``/v1/video_to_video`` returns a task id;
``GET /v1/tasks/{id}`` is polled (PENDING / THROTTLED -> queued, RUNNING -> in_progress, SUCCEEDED, FAILED,
CANCELLED) no more often than every 5 s, as Runway asks; the output URLs expire within 24-48 h and a new GET
returns fresh ones. ``ratio`` is in pixels ("1280:720"), so Kinema's width x height maps onto it directly. Failure
codes ``SAFETY.*`` are moderation.

Keyframes (``last_image``) go as ``promptImage`` = ``[{uri, position: "first"}, {uri, position: "last"}]`` on the
models whose SDK type takes a "last" position (veo3.1, veo3.1_fast; they refuse a last frame alone). An edit
(``source_video``) is ``video_to_video`` with ``aleph2``: the clip goes as a ``data:`` URI when it fits Runway's
5 MB, else through the SDK's ephemeral upload (``runway://`` URI). aleph2 has no strength setting, so an explicit
``strength`` is refused rather than silently dropped; the output keeps the source's length and framing.

Key: ``RUNWAYML_API_SECRET``; base URL: ``RUNWAYML_BASE_URL`` (the SDK's own variable). Cost is reported in credits
($0.01 each).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox", backend="runway", model="gen4.5", duration=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, KinemaError
from ..request import VideoRequest
from .base import Capabilities, GenerationParams
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    data_uri,
    fitted_data_uri,
    is_url,
    probe_source_video,
    ratio_in,
    stainless_error,
)

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
    last_frame: bool = False  # promptImage may hold a {"position": "last"} image (keyframes)
    edit: bool = False  # video_to_video: a source clip redrawn after the prompt

    @property
    def modes(self) -> tuple[str, ...]:
        if self.edit:
            return ("edit",)
        return (("t2v",) if self.t2v_ratios else ()) + ("i2v",) + (("keyframes",) if self.last_frame else ())


RUNWAY_MODELS: dict[str, RunwayModel] = {
    "gen4.5": RunwayModel(
        ("1280:720", "720:1280"), _GEN4_TURBO_RATIOS, tuple(float(d) for d in range(2, 11)), moderation=True
    ),
    # promptImage positions "first"/"last" (runwayml 5.24.0 types/image_to_video_create_params.py,
    # Veo3_1PromptImagePromptImage: "This model does not support generating with only a last frame"); gen4.5 and
    # gen4_turbo take "first" only
    "veo3.1": RunwayModel(_VEO_RATIOS, _VEO_RATIOS, (4.0, 6.0, 8.0), veo=True, last_frame=True),
    "veo3.1_fast": RunwayModel(_VEO_RATIOS, _VEO_RATIOS, (4.0, 6.0, 8.0), veo=True, last_frame=True),
    "gen4_turbo": RunwayModel((), _GEN4_TURBO_RATIOS, tuple(float(d) for d in range(2, 11)), moderation=True),
    # video_to_video (runwayml 5.24.0 types/video_to_video_create_params.py, Variant0): videoUri, promptText
    # (optional), ratio (optional), seed, keyframes (timed guidance images), contentModeration; no strength
    "aleph2": RunwayModel((), (), (), moderation=True, edit=True),
}
#: the model a request without one gets for a mode the default (gen4.5) does not offer
MODE_DEFAULTS = {"keyframes": "veo3.1", "edit": "aleph2"}
#: aleph2's source clip: 2 to 30 s at up to 30 fps (Runway's aleph2 schema as served by Comfy Router and the
#: ComfyUI Aleph2 node docs, docs.comfy.org [3P]; the SDK states no limit) [unverified at Runway]
EDIT_SECONDS = (2.0, 30.0)
EDIT_MAX_FPS = 30.0
#: models the SDK dropped (runwayml/sdk-python, types/image_to_video_create_params.py since 5.x; gen3a_turbo is
#: gone from every create overload in 5.24.0): refused locally with the reason
RETIRED_MODELS = {
    "gen3a_turbo": "removed from Runway's API (the runwayml SDK dropped it); use gen4_turbo or gen4.5",
    "veo3": "removed from Runway's API (the runwayml SDK 5.x dropped it); use veo3.1",
    # video_to_video took gen4_aleph ("feat(api): Gen-4 Aleph", 2025-08) until "feat(api): Aleph2"
    # replaced it; 5.24.0's video_to_video overloads have aleph2 and no gen4_aleph
    "gen4_aleph": "removed from Runway's API (the runwayml SDK replaced it); use aleph2",
}
#: Runway accepts data: URIs "up to 5MB" (runwayml SDK, types/image_to_video_create_params.py, promptImage)
DATA_URI_LIMIT = 5_000_000  # read as 10^6 bytes, the stricter reading
_STATUS = {
    "PENDING": "queued",
    "THROTTLED": "queued",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}


class RunwayBackend(RemoteBackend):
    name = "runway"
    provider = "runway"
    description = "Runway (gen4.5, veo3.1, gen4_turbo, aleph2 edits...) via the runwayml SDK"
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
            raise InvalidRequest(
                "model", f"{model!r} is {RETIRED_MODELS[model]}", value=model, allowed=", ".join(RUNWAY_MODELS)
            )
        if model not in RUNWAY_MODELS:
            raise InvalidRequest(
                "model",
                f"{model!r} is not a Runway video model Kinema knows",
                value=model,
                allowed=", ".join(RUNWAY_MODELS),
            )
        return RUNWAY_MODELS[model]

    def capabilities(self, model: str | None = None) -> Capabilities:
        m = self._model(model)
        if m.edit:
            # the output keeps the source clip's length and framing: resolve() fills both in from the clip
            frames = int(EDIT_SECONDS[1] * EDIT_MAX_FPS)
            return Capabilities(
                modes=m.modes,
                default_size=(1280, 720),
                default_frames=120,
                max_frames=frames,
                default_fps=24.0,
                edit_max_frames=frames,
                negative_prompt=False,
                max_prompt_chars=1000,
                default_strength=None,
                notes=f"video_to_video: keeps the source clip's length ({EDIT_SECONDS[0]:g}-{EDIT_SECONDS[1]:g} s, "
                f"up to {EDIT_MAX_FPS:g} fps) and framing; no strength setting",
            )
        ratios = tuple(dict.fromkeys(m.t2v_ratios + m.i2v_ratios))
        sizes = tuple(ratio_in(r) for r in ratios)
        return Capabilities(
            modes=m.modes,
            default_size=sizes[0],
            sizes=sizes,
            durations=m.durations,
            default_fps=24.0,
            negative_prompt=m.veo,
            max_prompt_chars=1000,
            notes="ratio is in pixels; output URLs expire in 24-48 h"
            + ("; keyframes need the first frame (image) too" if m.last_frame else ""),
        )

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        mode = request.mode
        if request.model is None and mode in MODE_DEFAULTS:  # the default gen4.5 does neither
            request = request.model_copy(update={"model": MODE_DEFAULTS[mode]})
        if mode != "edit":
            return super().resolve(request, seed)
        # aleph2 has no strength: a strength given would be silently dropped, so it is refused; the output keeps the
        # source's length and framing, so a size or length asked for is refused unless it is the source's own (a
        # resumed edit's rebuilt request carries the source's)
        if request.strength is not None:
            raise InvalidRequest(
                "strength",
                "Runway's aleph2 has no strength setting (how far the edit goes follows "
                "the prompt); leave strength out",
                value=request.strength,
                allowed="no strength with backend 'runway'",
            )
        clip = _probe_source(str(request.source_video))
        own = {
            "width": clip["width"],
            "height": clip["height"],
            "num_frames": clip["num_frames"],
            "fps": clip["fps"],
            "duration": clip["duration"],
            "aspect_ratio": None,
            "resolution": None,
        }
        for name, value in own.items():
            given = getattr(request, name)
            if given is not None and (value is None or abs(float(given) - float(value)) > 1e-3 * max(1.0, value)):
                shown = "" if value is None else f" ({value:g} for this clip)"
                raise InvalidRequest(
                    name,
                    f"Runway's aleph2 keeps the source clip's length and framing{shown}; leave "
                    f"{name} out when editing",
                    value=given,
                    allowed="the source clip's own",
                )
        params = super().resolve(request, seed)
        return params.with_(width=clip["width"], height=clip["height"], fps=clip["fps"], num_frames=clip["num_frames"])

    def check(self, params: GenerationParams) -> None:
        m = self._model(params.model)
        if "audio" in params.options and not m.veo:
            raise InvalidRequest("options.audio", f"only the veo models take audio, not {params.model!r}")
        if params.mode == "edit":
            return
        ratio = f"{params.width}:{params.height}"
        allowed = m.t2v_ratios if params.mode == "t2v" else m.i2v_ratios
        if ratio not in allowed:
            kind = "text-to-video" if params.mode == "t2v" else "image-to-video"
            raise InvalidRequest(
                "size",
                f"{params.width}x{params.height} is not offered by Runway {params.model!r} for {kind}",
                value=ratio,
                allowed=", ".join(r.replace(":", "x") for r in allowed),
            )
        if params.mode == "keyframes" and params.image_source is None:
            raise InvalidRequest(
                "image",
                f"Runway {params.model!r} needs the first frame (image) with the last one "
                "(it does not generate from a last frame alone)",
                allowed="image and last_image together",
            )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        runwayml = require_module("runwayml", "cloud", feature="the runway backend")
        # max_retries=0: the SDK would otherwise retry a POST that may already have been accepted (and paid)
        return runwayml.RunwayML(
            api_key=self.api_key("RUNWAYML_API_SECRET"),
            base_url=os.environ.get("RUNWAYML_BASE_URL") or None,
            max_retries=0,
            timeout=loop.request_timeout,
        )

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        m = self._model(params.model)
        kwargs: dict[str, Any] = {
            "model": params.model,
            "ratio": f"{params.width}:{params.height}",
            "duration": int(round(params.duration)),
            "seed": params.seed,
        }
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
        if params.mode == "edit":
            # aleph2 keeps the source's framing and length: no ratio, no duration
            body: dict[str, Any] = {
                "model": params.model,
                "video_uri": params.uploads["video_uri"],  # prepare() uploaded it, before the mark
                "seed": params.seed,
            }
            for key in ("prompt_text", "content_moderation"):
                if key in kwargs:
                    body[key] = kwargs[key]
            task = client.video_to_video.create(**body)
        elif params.mode in ("i2v", "keyframes"):
            assert params.image is not None  # check() refuses keyframes without the first frame
            image: Any = self._image_uri(params.image_source, params.image, "image")
            if params.mode == "keyframes":
                assert params.last_image is not None
                last = self._image_uri(params.last_image_source, params.last_image, "last_image")
                image = [{"uri": image, "position": "first"}, {"uri": last, "position": "last"}]
            task = client.image_to_video.create(prompt_image=image, extra_body=extra or None, **kwargs)
        else:
            task = client.text_to_video.create(extra_body=extra or None, **kwargs)
        return task.id, {}, None

    def prepare(self, client: Any, params: GenerationParams) -> None:
        # the clip's upload is not paid for: done before the submitting mark, its lost answer is only retried
        if params.mode == "edit":
            params.uploads["video_uri"] = self._video_uri(client, params)

    @staticmethod
    def _image_uri(source: Any, image: Any, field: str) -> str:
        # a local photo goes as a data: URI, re-encoded (JPEG, then smaller) to fit Runway's 5 MB
        if _is_https(source):
            return str(source)
        return fitted_data_uri(image, DATA_URI_LIMIT, field=field)

    def _video_uri(self, client: Any, params: GenerationParams) -> str:
        """The source clip as Runway takes it: a data: URI up to 5 MB, else an ephemeral upload (``runway://``;
        runwayml ``uploads.create_ephemeral``: POST /v1/uploads, then the file to the pre-signed URL it names)."""
        path = Path(str(params.source_video_path))
        mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
        size = path.stat().st_size
        if len("data:" + mime + ";base64,") + 4 * -(-size // 3) <= DATA_URI_LIMIT:
            return data_uri(path.read_bytes(), mime)
        return str(client.uploads.create_ephemeral(file=path).uri)

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
            status=_STATUS.get(status, "in_progress"),
            raw_status=status,
            progress=data.get("progress"),
            output_urls=[u for u in data.get("output") or [] if isinstance(u, str)],
            cost=cost_info,
            error_code=data.get("failureCode"),
            error_message=data.get("failure"),
            moderated=True
            if str(data.get("failureCode") or "").upper().startswith(("SAFETY.", "INPUT_PREPROCESSING.SAFETY"))
            else None,
        )

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # DELETE /v1/tasks/{id} cancels a running task (runwayml SDK resources/tasks.py ``delete``); 204, no body
        client.tasks.delete(task_id)
        return "DELETE /v1/tasks/{id}: 204"

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        return stainless_error(self.provider, exc) or super().translate_error(exc)


def _is_https(source: Any) -> bool:
    return isinstance(source, str) and source.startswith("https://")


def _probe_source(path: str) -> dict[str, Any]:
    """The source clip's size, frames and fps, refused (naming ``source_video``) outside aleph2's limits."""
    if is_url(path):  # the limits are checked on the file before anything is paid
        raise InvalidRequest(
            "source_video",
            "Runway's aleph2 edit checks the clip's length, fps and framing from a "
            "local file before the paid call; download the clip and give its path",
            value=path,
            allowed="a local video file",
        )
    low, high = EDIT_SECONDS
    return probe_source_video(path, "Runway's aleph2", min_seconds=low, max_seconds=high, max_fps=EDIT_MAX_FPS)
