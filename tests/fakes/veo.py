"""Fake of Veo on Vertex AI (reference/provider-apis.md §4.2) plus the OAuth token endpoint that application
default credentials refresh against: POST .../publishers/google/models/{model}:predictLongRunning returns an
operation {name}; POST .../models/{model}:fetchPredictOperation {operationName} returns it (done, error, or
response {videos: [{bytesBase64Encoded, mimeType}], raiMediaFilteredCount, raiMediaFilteredReasons}); a plain GET
on the operation name is a 404, as on Vertex. Auth: Bearer <OAuth access token>; errors
{"error": {code, message, status}}."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .base import FakeServer, Request, Response

MODELS = {"veo-3.1-generate-001", "veo-3.1-fast-generate-001", "veo-3.1-lite-generate-001"}
_MODEL_PATH = (
    r"/v1beta1/projects/(?P<project>[\w-]+)/locations/(?P<location>[\w-]+)/publishers/google/models/"
    r"(?P<model>[\w.-]+)"
)
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@functools.cache
def _service_account_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)  # made once: it takes a moment


class FakeVeo(FakeServer):
    provider = "veo"

    def __init__(self, video: bytes, key: str = "ya29.fake-access-token-0123456789") -> None:
        from cryptography.hazmat.primitives import serialization

        private = _service_account_key()
        self.private_pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.public_key = private.public_key()
        self.client_email = "kinema-test@kinema-test.iam.gserviceaccount.com"
        self.other_secrets = [self.private_pem.splitlines()[1]]
        self.project = "kinema-test"
        self.token_requests = 0
        super().__init__(video, key)

    def write_adc(self, folder: Path) -> Path:
        """A service-account credentials file (what GOOGLE_APPLICATION_CREDENTIALS names) whose token_uri is this
        fake: google-auth signs a JWT assertion with the key and trades it here for an access token."""
        path = folder / "adc.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.project,
                    "private_key_id": "k1",
                    "private_key": self.private_pem,
                    "client_email": self.client_email,
                    "client_id": "1234567890",
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return path

    def operation_name(self, task_id: str) -> str:
        task = self.tasks[task_id]
        return task.extra["name"]

    def setup_routes(self) -> None:
        # the GCE / Cloud Run metadata server (what google.auth.default() asks when no credentials file exists):
        # the ping, the project id and the attached service account's token; always answered with
        # "Metadata-Flavor: Google", which google-auth checks
        self.route("GET", r"", self.metadata_ping, kind="metadata")
        self.route("GET", r"/computeMetadata/v1/project/project-id", self.metadata_project, kind="metadata")
        self.route(
            "GET", r"/computeMetadata/v1/instance/service-accounts/default", self.metadata_account, kind="metadata"
        )
        self.route(
            "GET", r"/computeMetadata/v1/instance/service-accounts/default/token", self.metadata_token, kind="metadata"
        )
        self.route("POST", r"/token", self.token, kind="token")
        self.route("POST", _MODEL_PATH + r":predictLongRunning", self.predict, kind="submit")
        self.route("POST", _MODEL_PATH + r":fetchPredictOperation", self.fetch, kind="poll")
        self.route(
            "GET",
            _MODEL_PATH + r"/operations/(?P<id>[0-9a-f-]+)",
            lambda r: Response(404, self.error_body(404, "Not found: use fetchPredictOperation")),
        )

    def auth_error(self, req: Request) -> Response | None:
        if req.path in ("/", "/token") or req.path.startswith("/computeMetadata/"):
            if req.path != "/token" and req.header("metadata-flavor") != "Google":
                return Response(403, b"Missing Metadata-Flavor:Google header.", content_type="text/html")
            return None
        if req.header("authorization") == f"Bearer {self.key}":
            return None
        return Response(
            401, self.error_body(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        )

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        if status == 429:
            message = "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model"
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}

    _FLAVOR = {"Metadata-Flavor": "Google"}

    def metadata_ping(self, req: Request) -> Response:
        return Response(200, b"computeMetadata/\n", self._FLAVOR, content_type="application/text")

    def metadata_project(self, req: Request) -> Response:
        return Response(200, self.project.encode(), self._FLAVOR, content_type="application/text")

    def metadata_account(self, req: Request) -> Response:
        return Response(
            200,
            {
                "aliases": ["default"],
                "email": self.client_email,
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            },
            self._FLAVOR,
        )

    def metadata_token(self, req: Request) -> Response:
        with self.lock:
            self.token_requests += 1
        return Response(200, {"access_token": self.key, "expires_in": 3599, "token_type": "Bearer"}, self._FLAVOR)

    def token(self, req: Request) -> Response:
        import jwt

        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response(400, {"error": "unsupported_grant_type"})
        try:
            # google-auth addresses the assertion to the token URI it was given or to Google's own
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                audience=[f"{self.url}/token", "https://oauth2.googleapis.com/token"],
            )
        except jwt.InvalidTokenError as exc:
            return Response(400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature ({exc})"})
        if claims.get("iss") != self.client_email:
            return Response(400, {"error": "invalid_grant", "error_description": "Invalid issuer"})
        return Response(
            200,
            {
                "access_token": self.key,
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
            },
        )

    def _bad(self, message: str) -> Response:
        return Response(400, self.error_body(400, message))

    def predict(self, req: Request) -> Response:
        assert req.match is not None
        model = req.match.group("model")
        if model not in MODELS:
            return Response(
                404,
                self.error_body(
                    404, f"Publisher Model `{model}` was not found or your project does not have access to it."
                ),
            )
        body = req.json()
        instances, parameters = body.get("instances") or [{}], body.get("parameters") or {}
        instance = instances[0]
        if not instance.get("prompt") and not instance.get("image"):
            return self._bad("prompt or image is required")
        if parameters.get("durationSeconds", 8) not in (4, 6, 8):
            return self._bad(f"Unsupported durationSeconds: {parameters.get('durationSeconds')}")
        if parameters.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
            return self._bad(f"Unsupported aspectRatio: {parameters.get('aspectRatio')}")
        if parameters.get("resolution", "720p") not in ("720p", "1080p", "4k"):
            return self._bad(f"Unsupported resolution: {parameters.get('resolution')}")
        image = instance.get("image")
        if image is not None and not (image.get("bytesBase64Encoded") or image.get("gcsUri")):
            return self._bad("image needs bytesBase64Encoded or gcsUri")
        op_id = str(uuid.uuid4())
        task = self.new_task({**instance, **parameters}, task_id=op_id)
        name = (
            f"projects/{req.match.group('project')}/locations/{req.match.group('location')}/publishers/google/"
            f"models/{model}/operations/{op_id}"
        )
        task.extra.update(name=name, image=image)
        return Response(200, {"name": name})

    def fetch(self, req: Request) -> Response:
        name = str(req.json().get("operationName", ""))
        task = self.tasks.get(name.rpartition("/operations/")[2])
        if task is None or task.extra["name"] != name:
            return Response(404, self.error_body(404, f"Operation {name} not found"))
        phase = self.advance(task)
        if phase in ("queued", "running"):
            return Response(200, {"name": name, "done": False, "metadata": {}})
        if phase == "fail":
            return Response(
                200, {"name": name, "done": True, "error": {"code": 13, "message": "Internal error encountered."}}
            )
        response: dict[str, Any] = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"}
        if phase == "not_charged":  # the filter's false positive (googleapis/js-genai#1272)
            response.update(
                raiMediaFilteredCount=1,
                raiMediaFilteredReasons=[
                    "We encountered an issue with the audio for your prompt. You have not been charged for this "
                    "request. Please try changing your prompt or generating again."
                ],
            )
            return Response(200, {"name": name, "done": True, "response": response})
        if phase == "moderate":
            response.update(
                raiMediaFilteredCount=1,
                raiMediaFilteredReasons=[
                    "Veo could not generate videos because the input prompt violates Vertex AI's usage guidelines."
                ],
            )
            return Response(200, {"name": name, "done": True, "response": response})
        served = self.serve_video()  # the video travels inside the operation: its "download" can fail too
        if served.status != 200:
            return Response(500, self.error_body(500, "Internal error encountered."))
        response["videos"] = [{"bytesBase64Encoded": base64.b64encode(self.video).decode(), "mimeType": "video/mp4"}]
        return Response(200, {"name": name, "done": True, "response": response})
