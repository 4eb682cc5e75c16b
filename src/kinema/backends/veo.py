"""Google Veo on Vertex AI through the official ``google-genai`` SDK (reference/provider-apis.md §4.2).

``client.models.generate_videos`` posts ``...:predictLongRunning`` and returns an operation; the operation is polled
with ``client.operations.get``, which on Vertex posts ``...:fetchPredictOperation`` (a plain GET on the operation
name is a 404 there). ``done`` with ``error`` is a failure; ``done`` with no videos but ``raiMediaFilteredCount``
is a safety-filter refusal (ContentRejected), not a success. Without ``storageUri`` the video bytes come back
inline in the operation, so there is no output URL to expire: a failed decode is retried by fetching the
operation again.

Veo on the Gemini Developer API (AI Studio keys) is retired; this backend is Vertex only.

Credentials: Google application default credentials (``gcloud auth application-default login``, or
``GOOGLE_APPLICATION_CREDENTIALS`` naming a credentials file) and a project (``GOOGLE_CLOUD_PROJECT``, else the ADC
project); ``GOOGLE_CLOUD_LOCATION`` (default ``us-central1``). Base URL: ``GOOGLE_VERTEX_BASE_URL`` (the SDK's own
variable) or ``KINEMA_VEO_BASE_URL``.

>>> import kinema  # doctest: +SKIP
>>> kinema.generate("a fox in snow", backend="veo", duration=8, aspect_ratio="16:9")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, ContentRejected, InvalidRequest, KinemaError, ProviderError
from .base import Availability, Capabilities, GenerationParams, module_available
from .remote import (
    LoopOptions,
    RemoteBackend,
    TaskStatus,
    encode_png,
    http_error,
    known_ratio,
    ratio_sizes,
    short_side_name,
)

__all__ = ["VeoBackend", "VEO_MODELS"]

VEO_MODELS = ("veo-3.1-generate-001", "veo-3.1-fast-generate-001", "veo-3.1-lite-generate-001")
VEO_RATIOS = ("16:9", "9:16")
VEO_RESOLUTIONS = {"720p": 720, "1080p": 1080}
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_ADC_HINT = (
    "set Google application default credentials (gcloud auth application-default login, or "
    "GOOGLE_APPLICATION_CREDENTIALS=<credentials file>) and GOOGLE_CLOUD_PROJECT, or run on GCE / Cloud Run "
    "with a service account attached"
)


def _adc_file() -> Path | None:
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        return Path(named)
    config = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    well_known = config / "application_default_credentials.json"
    return well_known if well_known.is_file() else None


#: variables set on Google's runtimes (Cloud Run services and jobs, Cloud Functions, App Engine) or naming a
#: metadata server (google-auth's own GCE_METADATA_HOST / GCE_METADATA_ROOT / GCE_METADATA_IP)
_GOOGLE_RUNTIME_VARS = (
    "K_SERVICE",
    "CLOUD_RUN_JOB",
    "FUNCTION_TARGET",
    "GAE_SERVICE",
    "GCE_METADATA_HOST",
    "GCE_METADATA_ROOT",
    "GCE_METADATA_IP",
)
#: a Veo answer whose filter reasons say this was a false positive of the filter, not a refusal
_NOT_CHARGED = re.compile(r"(have|has|will) not (been |be )?charged", re.I)


def on_google_cloud() -> bool:
    """Whether this runs where a metadata server hands out credentials (no network call): a Google runtime's
    variables, or the GCE BIOS product name google-auth itself checks (``detect_gce_residency_linux``)."""
    if any(os.environ.get(v) for v in _GOOGLE_RUNTIME_VARS):
        return True
    if os.environ.get("NO_GCE_CHECK", "").lower() in ("1", "true"):  # google-auth's switch for its own check
        return False
    try:
        from google.auth.compute_engine import _metadata

        return bool(_metadata.detect_gce_residency_linux())
    except Exception:  # pragma: no cover - google-auth missing or changed
        return False


class VeoBackend(RemoteBackend):
    name = "veo"
    provider = "veo"
    description = "Google Veo 3.1 on Vertex AI via the google-genai SDK"
    env_keys = ("GOOGLE_APPLICATION_CREDENTIALS",)
    requires = (("google.genai", "cloud"),)
    recommended_poll_interval = 10.0
    max_poll_interval = 30.0
    provider_options = ("generate_audio", "person_generation", "enhance_prompt")

    def availability(self) -> Availability:
        for module, extra in self.requires:
            if not module_available(module):
                return Availability.no(f"extra '{extra}' not installed (pip install 'kinema[{extra}]')")
        adc = _adc_file()
        if adc is None or not adc.is_file():
            if on_google_cloud():
                # GCE / Cloud Run / Cloud Functions: google.auth.default() takes the attached service account's
                # token (and the project) from the metadata server, as google-genai does; no file is needed
                return Availability.ok()
            return Availability.no(f"credentials missing: {_ADC_HINT}")
        if not os.environ.get("GOOGLE_CLOUD_PROJECT") and not _adc_project(adc):
            return Availability.no(f"project missing: set GOOGLE_CLOUD_PROJECT ({_ADC_HINT})")
        return Availability.ok()

    def secrets(self) -> list[str]:
        return []  # the credentials live in a file google-auth reads; none of them passes through Kinema

    def models(self) -> list[str]:
        return list(VEO_MODELS)

    def default_model(self) -> str:
        return "veo-3.1-fast-generate-001"

    def capabilities(self, model: str | None = None) -> Capabilities:
        model = model or self.default_model()
        if model not in VEO_MODELS:
            raise InvalidRequest(
                "model",
                f"{model!r} is not a Veo model on Vertex AI (the 2.0 and 3.0 ids and the "
                f"Gemini-API previews are retired)",
                value=model,
                allowed=", ".join(VEO_MODELS),
            )
        return Capabilities(
            modes=("t2v", "i2v"),
            default_size=(1280, 720),
            sizes=ratio_sizes(VEO_RATIOS, tuple(VEO_RESOLUTIONS.values())),
            aspect_ratios=VEO_RATIOS,
            durations=(4.0, 6.0, 8.0),
            default_fps=24.0,
            notes="16:9 or 9:16 at 720p or 1080p; 4, 6 or 8 seconds",
        )

    def check(self, params: GenerationParams) -> None:
        value = params.options.get("person_generation")
        if value is not None and value not in ("dont_allow", "allow_adult", "allow_all"):
            raise InvalidRequest(
                "options.person_generation", f"{value!r} is not offered", allowed="dont_allow, allow_adult, allow_all"
            )

    def make_client(self, loop: LoopOptions) -> Any:
        from .base import require_module

        genai = require_module("google.genai", "cloud", feature="the veo backend")
        types = require_module("google.genai.types", "cloud", feature="the veo backend")
        import google.auth
        import google.auth.exceptions

        try:
            credentials, adc_project = google.auth.default(scopes=_SCOPES)
        except google.auth.exceptions.DefaultCredentialsError:
            raise BackendUnavailable(self.name, f"credentials missing: {_ADC_HINT}") from None
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or adc_project
        if not project:
            raise BackendUnavailable(self.name, f"project missing: set GOOGLE_CLOUD_PROJECT ({_ADC_HINT})")
        base = os.environ.get("GOOGLE_VERTEX_BASE_URL") or os.environ.get("KINEMA_VEO_BASE_URL")
        http_options = types.HttpOptions(
            base_url=base or None,
            timeout=int(loop.request_timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # no hidden re-send of predictLongRunning
        )
        return genai.Client(
            vertexai=True,
            project=project,
            credentials=credentials,
            location=os.environ.get("GOOGLE_CLOUD_LOCATION") or "us-central1",
            http_options=http_options,
        )

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        from google.genai import types

        image = None
        if params.mode == "i2v":
            assert params.image is not None
            image = types.Image(image_bytes=encode_png(params.image), mime_type="image/png")
        config: dict[str, Any] = {
            "number_of_videos": 1,
            "duration_seconds": int(round(params.duration)),
            "aspect_ratio": known_ratio(params.width, params.height, VEO_RATIOS),
            "resolution": short_side_name(params.width, params.height, VEO_RESOLUTIONS),
            "seed": params.seed,
        }
        if params.negative_prompt:
            config["negative_prompt"] = params.negative_prompt
        for key in self.provider_options:
            if key in params.options:
                config[key] = params.options[key]
        operation = client.models.generate_videos(
            model=params.model,
            source=types.GenerateVideosSource(prompt=params.prompt, image=image),
            config=types.GenerateVideosConfig(**config),
        )
        return str(operation.name), {}, self._status(operation)

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        from google.genai import types

        operation = types.GenerateVideosOperation(name=task_id)  # type: ignore[call-arg]
        return self._status(client.operations.get(operation))

    def _status(self, operation: Any) -> TaskStatus:
        if not operation.done:
            return TaskStatus(status="in_progress", raw_status="running")
        error = operation.error
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else str(error)
            return TaskStatus(
                status="failed",
                raw_status="done (error)",
                error_code=str(code) if code else None,
                error_message=str(message),
            )
        result = operation.result or operation.response
        videos = list(getattr(result, "generated_videos", None) or [])
        if not videos:
            count = getattr(result, "rai_media_filtered_count", None)
            reasons = getattr(result, "rai_media_filtered_reasons", None) or []
            if count and any(_NOT_CHARGED.search(str(r)) for r in reasons):
                # the filter's "You have not been charged" results are false positives (googleapis/js-genai#1272,
                # python-genai#1559): not a refusal of the prompt; nothing was billed, so running it again is free
                # to try
                return TaskStatus(
                    status="failed",
                    raw_status="done (filtered, not charged)",
                    moderated=False,
                    error_code="RAI_NOT_CHARGED",
                    error_message="Veo produced no video and says you have not been charged ("
                    + "; ".join(str(r) for r in reasons)
                    + "); this is usually a false positive of "
                    "its filter, not a refusal of the prompt: run the same request again (with "
                    "options.generate_audio=false if it mentions audio)",
                )
            if count:
                return TaskStatus(
                    status="failed",
                    raw_status="done (filtered)",
                    moderated=True,
                    error_code="RAI_FILTERED",
                    error_message="; ".join(reasons) or f"{count} video(s) removed by the safety filter",
                )
            return TaskStatus(
                status="failed",
                raw_status="done (no videos)",
                error_code="NO_OUTPUT",
                error_message="the operation finished without a video",
            )
        video = videos[0].video
        data = {"bytes": video.video_bytes, "uri": video.uri}
        return TaskStatus(status="completed", raw_status="done", data=data)

    def download(
        self, client: Any, task_id: str, info: dict[str, Any], status: TaskStatus, dest: Path, loop: LoopOptions
    ) -> None:
        content = status.data.get("bytes")
        if content:
            dest.write_bytes(content if isinstance(content, bytes) else base64.b64decode(content))
            return
        uri = status.data.get("uri")
        if isinstance(uri, str) and uri.startswith(("http://", "https://")):
            self.download_url(uri, dest, loop)
            return
        raise ProviderError(
            f"veo returned the video at {uri!r}, which Kinema cannot fetch; do not set a storageUri",
            provider=self.provider,
            provider_code="gcs_output",
        )

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None)
            message = exc.message or str(exc)
            if exc.code == 400 and "safety" in str(message).lower():
                return ContentRejected(f"veo refused the request on content grounds: {message}")
            return http_error(
                self.provider,
                int(exc.code) if exc.code else None,
                message,
                code=str(exc.status) if exc.status else None,
                headers=headers,
            )
        try:
            import google.auth.exceptions

            if isinstance(exc, google.auth.exceptions.RefreshError):
                return ProviderError(
                    f"veo: Google credentials were refused ({_short(exc)}); {_ADC_HINT}",
                    provider=self.provider,
                    provider_code="auth",
                    status_code=401,
                )
        except ImportError:  # pragma: no cover
            pass
        return super().translate_error(exc)


def _short(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text[:200]


def _adc_project(path: Path) -> str | None:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("quota_project_id") or data.get("project_id")
