"""Replicate through the official ``replicate`` SDK (reference/provider-apis.md §9).

``POST /v1/models/{owner}/{name}/predictions`` (or ``/v1/predictions`` with a version) creates a prediction;
``GET /v1/predictions/{id}`` is polled (``starting`` -> queued, ``processing`` -> in_progress, ``succeeded``,
``failed``, ``canceled``); ``output`` is a URL or a list of URLs, served from expiring signed URLs. The SDK never
retries a POST (so no hidden second paid prediction) and retries GETs on 429/503/504 honouring Retry-After.

Models: a few official video models are checked against what they accept (marked [unverified] in
docs/providers.md: the contract does not list model inputs); any other ``owner/name`` or ``owner/name:version`` is
passed through, with its extra inputs in ``options["input"]``. Keyframes: kwaivgi/kling-v2.1 takes the last frame as
``end_image`` (pro mode, 1080p) beside its required ``start_image``. Edits: luma/modify-video takes the clip as
``video`` (an http(s) URL as given, or a local file uploaded first with the SDK's ``files.create``) and ``strength``
as one of Luma's nine modes; its output keeps the source's length and framing. References: kwaivgi/kling-o1 takes up
to 7 ``reference_images`` beside the prompt.

Key: ``REPLICATE_API_TOKEN``; base URL: ``REPLICATE_BASE_URL`` (the SDK's own variable).

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox in snow", backend="replicate", model="minimax/video-01")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, KinemaError, ProviderError
from ..request import VideoRequest
from .base import Capabilities, GenerationParams
from .luma import FRAMING_FIELDS, MODIFY_DEFAULT_STRENGTH, keeps_source_framing, modify_mode
from .remote import LoopOptions, RemoteBackend, TaskStatus, data_uri, encode_png, http_error, is_url, ratio_sizes

__all__ = ["ReplicateBackend", "REPLICATE_MODELS"]

_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*(:[0-9a-f]{64})?$")
_STATUS = {
    "starting": "queued",
    "processing": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "cancelled",
    "aborted": "cancelled",
}


@dataclass(frozen=True)
class ReplicateModel:
    modes: tuple[str, ...]
    image_field: str
    durations: tuple[float, ...] | None
    sizes: tuple[tuple[int, int], ...] | None
    negative_prompt: bool
    duration_field: str | None = None
    #: the last-frame input (keyframes), and the short side it needs (None: any)
    end_field: str | None = None
    end_short_side: int | None = None
    #: the clip input of an edit model whose ``mode`` takes Luma's modify-video modes, and its source limits
    video_field: str | None = None
    max_seconds: float | None = None
    max_bytes: int | None = None
    #: the reference-images input and how many it takes (0: none)
    references_field: str | None = None
    max_references: int = 0
    #: the ``mode`` values for 720p and 1080p, where the model takes a mode
    mode_names: tuple[str, str] = ("standard", "pro")


REPLICATE_MODELS: dict[str, ReplicateModel] = {
    "minimax/video-01": ReplicateModel(("t2v", "i2v"), "first_frame_image", (6.0,), ((1280, 720),), False),
    # end_image: "Last frame of the video (pro mode is required when this parameter is set)"; start_image: "You must
    # use a start image with kling-v2.1" (replicate.com/kwaivgi/kling-v2.1 input schema, version daad218f)
    "kwaivgi/kling-v2.1": ReplicateModel(
        ("i2v", "keyframes"),
        "start_image",
        (5.0, 10.0),
        ratio_sizes(("16:9",), (720, 1080)),
        True,
        duration_field="duration",
        end_field="end_image",
        end_short_side=1080,
    ),
    # video: "The video to modify. Maximum video size is 100mb. Maximum video duration is 30 seconds."; mode (default
    # adhere_1) "How closely the output should follow the source video"; prompt; first_frame (replicate.com/luma/
    # modify-video, version f52f1714 API page, input schema)
    "luma/modify-video": ReplicateModel(
        ("edit",), "first_frame", None, None, False, video_field="video", max_seconds=30.0, max_bytes=100_000_000
    ),
    # reference_images: "Reference images for elements, scenes, or styles (up to 7 without video, 4 with video)";
    # duration "For text/image-to-video: 5 or 10"; mode 'std' / 'pro' (default pro); aspect_ratio (default 16:9, its
    # other values not listed there: only 16:9 is sent); start_image optional (replicate.com/kwaivgi/kling-o1,
    # version 6d5f2d4b API page, input schema)
    "kwaivgi/kling-o1": ReplicateModel(
        ("references",),
        "start_image",
        (5.0, 10.0),
        ratio_sizes(("16:9",), (720, 1080)),
        False,
        duration_field="duration",
        references_field="reference_images",
        max_references=7,
        mode_names=("std", "pro"),
    ),
}
#: the model a request without one gets for a mode the default (minimax/video-01) does not offer
MODE_DEFAULTS = {"keyframes": "kwaivgi/kling-v2.1", "edit": "luma/modify-video", "references": "kwaivgi/kling-o1"}


class ReplicateBackend(RemoteBackend):
    name = "replicate"
    provider = "replicate"
    description = "Replicate (official video models and any owner/name[:version]) via the replicate SDK"
    env_keys = ("REPLICATE_API_TOKEN",)
    requires = (("replicate", "cloud"),)
    recommended_poll_interval = 2.0
    max_poll_interval = 15.0
    provider_options = ("input", "cancel_after")

    def models(self) -> list[str]:
        return list(REPLICATE_MODELS)

    def default_model(self) -> str:
        return "minimax/video-01"

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if not _MODEL_ID.match(model):
            raise InvalidRequest(
                "model",
                f"{model!r} is not a Replicate model id",
                value=model,
                allowed="owner/name or owner/name:<64-hex version>, e.g. " + ", ".join(REPLICATE_MODELS),
            )
        known = REPLICATE_MODELS.get(model)
        if known is None:  # someone's model: Replicate checks its inputs
            return Capabilities(
                modes=("t2v", "i2v"),
                default_size=(1280, 720),
                default_frames=120,
                default_fps=24.0,
                notes="any Replicate model; extra inputs in options['input']",
            )
        if known.video_field:
            return Capabilities(
                modes=known.modes,
                default_size=(1280, 720),
                default_fps=24.0,
                negative_prompt=False,
                seed=False,
                default_strength=MODIFY_DEFAULT_STRENGTH,
                notes=f"keeps the source clip's length and framing (at most {known.max_seconds:g} s); "
                "strength picks one of Luma's nine modify modes",
            )
        return Capabilities(
            modes=known.modes,
            max_references=known.max_references,
            default_size=(known.sizes or ((1280, 720),))[0],
            sizes=known.sizes,
            durations=known.durations,
            default_fps=24.0,
            negative_prompt=known.negative_prompt,
            notes="[unverified] model inputs",
        )

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        if request.model is None and request.mode in MODE_DEFAULTS:
            request = request.model_copy(update={"model": MODE_DEFAULTS[request.mode]})
        known = REPLICATE_MODELS.get(str(request.model))
        if request.mode == "edit" and known is not None and known.video_field:
            where = f"Replicate {request.model!r}"
            params = super().resolve(request.model_copy(update=dict.fromkeys(FRAMING_FIELDS)), seed)
            clip = keeps_source_framing(
                request, where, params, max_seconds=known.max_seconds, max_bytes=known.max_bytes
            )
            if clip is None:  # a URL: not fetched here, so the plan's size and length are nominal
                note = f"{where} keeps the source clip's length and framing; the size and length shown are nominal"
                return params.with_(warnings=[*params.warnings, note])
            return params.with_(
                width=clip["width"], height=clip["height"], fps=clip["fps"], num_frames=clip["num_frames"]
            )
        sized = any(getattr(request, f) is not None for f in ("width", "height", "aspect_ratio", "resolution"))
        if request.mode == "keyframes" and known is not None and known.end_short_side and not sized:
            # the last frame needs pro mode (1080p); the default size is 720p (standard)
            request = request.model_copy(update={"resolution": f"{known.end_short_side}p"})
        return super().resolve(request, seed)

    def check(self, params: GenerationParams) -> None:
        known = REPLICATE_MODELS.get(str(params.model))
        if params.mode == "keyframes" and known is not None:
            where = f"Replicate {params.model!r}"
            if params.image_source is None:
                raise InvalidRequest(
                    "image",
                    f"{where} needs the first frame ({known.image_field}) with the last one",
                    allowed="image and last_image together",
                )
            if known.end_short_side and min(params.width, params.height) != known.end_short_side:
                raise InvalidRequest(
                    "resolution",
                    f"{where} takes a last frame only at {known.end_short_side}p (pro mode)",
                    value=f"{params.width}x{params.height}",
                    allowed=f"{known.end_short_side}p",
                )
        after = params.options.get("cancel_after")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int | float) or not 5 <= after):
            raise InvalidRequest(
                "options.cancel_after",
                f"{after!r} is not a number of seconds (at least 5)",
                value=after,
                allowed="seconds, e.g. 1800",
            )
        extra = params.options.get("input")
        if extra is not None and not isinstance(extra, dict):
            raise InvalidRequest(
                "options.input",
                f"must be a mapping of the model's input names to values, not {type(extra).__name__}",
                value=extra,
            )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        replicate = require_module("replicate", "cloud", feature="the replicate backend")
        import httpx

        return replicate.Client(
            api_token=self.api_key("REPLICATE_API_TOKEN"),
            base_url=os.environ.get("REPLICATE_BASE_URL") or None,
            timeout=httpx.Timeout(loop.request_timeout),
        )

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        model = str(params.model)
        known = REPLICATE_MODELS.get(model)
        inputs: dict[str, Any] = {"prompt": params.prompt}
        if params.negative_prompt:
            inputs["negative_prompt"] = params.negative_prompt
        if known is None:
            inputs["seed"] = params.seed
        elif known.duration_field:
            inputs[known.duration_field] = int(round(params.duration))
            if known.sizes and len(known.sizes) > 1:
                standard, pro = known.mode_names
                inputs["mode"] = pro if min(params.width, params.height) >= 1080 else standard
        if params.mode == "edit" and known is not None and known.video_field:
            assert params.strength is not None  # the default strength fills it in
            inputs[known.video_field] = params.uploads["video"]  # prepare() uploaded it, before the mark
            inputs["mode"] = modify_mode(params.strength)
        if params.mode in ("i2v", "keyframes"):
            assert params.image is not None
            inputs[known.image_field if known else "image"] = _file_input(params.image_source, params.image)
        if params.mode == "references" and known is not None and known.references_field:
            pairs = zip(params.reference_sources, params.references, strict=True)
            inputs[known.references_field] = [_file_input(source, image) for source, image in pairs]
        if params.mode == "keyframes" and known is not None and known.end_field:
            assert params.last_image is not None
            inputs[known.end_field] = _file_input(params.last_image_source, params.last_image)
        inputs.update(params.options.get("input") or {})
        after = params.options.get("cancel_after")
        if after is not None:
            # Replicate cancels (or, before it starts, aborts) the prediction after this long: the "Cancel-After"
            # create header (replicate.com changelog 2025-10-16); the SDK has no argument for it, so an httpx hook
            # adds it to this client's create calls
            value = f"{int(after)}s"

            def deadline_header(request: Any) -> None:
                if request.method == "POST" and request.url.path.endswith("/predictions"):
                    request.headers["Cancel-After"] = value

            client._client.event_hooks = {"request": [deadline_header], "response": []}
        hook: dict[str, Any] = {}
        callback = self.callback_url()
        if callback:  # signed with Standard Webhooks; "completed" only: one call when the prediction ends
            hook = {"webhook": callback, "webhook_events_filter": ["completed"]}
        if ":" in model:
            prediction = client.predictions.create(version=model.split(":", 1)[1], input=inputs, **hook)
        else:
            # a community model without a version is not served on the official-models route: run its latest
            # version (GET /v1/models/{owner}/{name} -> latest_version.id, as Replicate's docs describe)
            version = None if known is not None else self._latest_version(client, model)
            if version is None:  # an official model: POST /v1/models/{owner}/{name}/predictions
                prediction = client.predictions.create(model=model, input=inputs, **hook)
            else:
                prediction = client.predictions.create(version=version, input=inputs, **hook)
        return str(prediction.id), {}, self._status(prediction)

    def prepare(self, client: Any, params: GenerationParams) -> None:
        # the clip's upload is not paid for: done before the submitting mark, its lost answer is only retried
        known = REPLICATE_MODELS.get(str(params.model))
        if params.mode == "edit" and known is not None and known.video_field:
            params.uploads["video"] = self._video_input(client, params.source_video_path)

    @staticmethod
    def _video_input(client: Any, source: Any) -> str:
        """An edit's clip: an http(s) URL as given, else the file uploaded with the SDK's ``files.create``
        (``POST /v1/files``, multipart ``content``), whose ``urls.get`` the model fetches. The upload is made before
        the paid create; it costs nothing and expires on its own."""
        if is_url(source):
            return str(source)
        return str(client.files.create(str(source)).urls["get"])

    def _latest_version(self, client: Any, model: str) -> str | None:
        """None for an official model, else the latest version id of a community model (cached per model)."""
        cache: dict[str, str | None] = self.__dict__.setdefault("_versions", {})
        if model in cache:
            return cache[model]
        resp = client._request("GET", f"/v1/models/{model}")  # the SDK raises ReplicateError on 4xx
        data = resp.json()
        latest = (data.get("latest_version") or {}).get("id") if isinstance(data, dict) else None
        official = isinstance(data, dict) and data.get("is_official") is True
        if not official and not latest:
            raise ProviderError(
                f"replicate model {model!r} has no version to run; give owner/name:<version>",
                provider=self.provider,
                provider_code="no_version",
            )
        cache[model] = None if official else str(latest)
        return cache[model]

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        # POST /v1/predictions/{id}/cancel (replicate SDK predictions.cancel); canceled predictions stop billing
        prediction = client.predictions.cancel(task_id)
        return f"POST /v1/predictions/{{id}}/cancel: {prediction.status}"

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        return self._status(client.predictions.get(task_id))

    def _status(self, prediction: Any) -> TaskStatus:
        raw = str(prediction.status)
        output = prediction.output
        urls: list[str] = []
        if isinstance(output, str):
            urls = [output]
        elif isinstance(output, list):
            urls = [u for u in output if isinstance(u, str)]
        elif isinstance(output, dict):
            urls = [u for u in output.values() if isinstance(u, str) and u.startswith("http")]
        metrics = prediction.metrics or {}
        cost = {"predict_time": metrics["predict_time"]} if metrics.get("predict_time") is not None else None
        error = prediction.error
        return TaskStatus(
            status=_STATUS.get(raw, "in_progress"),
            raw_status=raw,
            output_urls=urls,
            cost=cost,
            error_message=str(error) if error else None,
        )

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        from replicate.exceptions import ReplicateError

        if isinstance(exc, ReplicateError):
            message = exc.detail or exc.title or str(exc)
            return http_error(self.provider, exc.status, message, code=exc.title)
        return super().translate_error(exc)


def _file_input(source: Any, image: Any) -> str:
    """An https URL as given, else the image as a PNG data URI (Replicate takes data URIs for file inputs)."""
    if isinstance(source, str) and source.startswith("https://"):
        return source
    return data_uri(encode_png(image))
