"""Fake of Replicate's API (reference/provider-apis.md §9): POST /v1/models/{owner}/{name}/predictions and
POST /v1/predictions (by version), GET /v1/predictions/{id}, POST /v1/predictions/{id}/cancel; Bearer auth;
RFC 7807 errors {title, status, detail} (429: "Request was throttled. Your rate limit resets in ~Ns.");
prediction status starting / processing / succeeded / failed / canceled; output a URL (or a list).

POST /v1/files takes a multipart ``content`` file (replicate SDK ``files.create``) and answers the File object whose
``urls.get`` a model input may name. luma/modify-video needs ``video`` (a URL; at most 100 MB and 30 s, which the
fake checks for its own uploads) and takes ``mode`` adhere_1..3 / flex_1..3 / reimagine_1..3 (its model page).
kwaivgi/kling-o1 takes ``reference_images`` (at most 7), ``mode`` std / pro and ``duration`` 5 / 10 (its model
page)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

from .base import FakeServer, Request, Response, bearer_ok

MODELS = {
    "minimax/video-01": "c8bcc4751328608bb75043b3af7bed4eabcf1a6c0a478d50a4cf57fa04bd5101",
    "kwaivgi/kling-v2.1": "daad218feb714b03e2a1ac445986aebb9d05243cd00da2af17be2e4049f48f69",
    "kwaivgi/kling-o1": "6d5f2d4becc7f734d190d17f13f776229c359cafc1c1898d78945e8d87c57538",
    "luma/modify-video": "f52f17143e022cadb2dbf20467cfe4510f04cf940dcb846f1581472082a295d2",
    "someone/custom-video": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
}
#: official models run on POST /v1/models/{owner}/{name}/predictions; a community model is not served there
#: (replicate.com changelog 2025-08-05: that route is "for running official models") and needs its version
OFFICIAL = {"minimax/video-01", "kwaivgi/kling-v2.1", "luma/modify-video", "kwaivgi/kling-o1"}
MODIFY_MODES = {f"{kind}_{n}" for kind in ("adhere", "flex", "reimagine") for n in (1, 2, 3)}
MAX_VIDEO_BYTES = 100_000_000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


class FakeReplicate(FakeServer):
    provider = "replicate"

    def __init__(self, video: bytes, key: str = "r8_testtoken0123456789abcdefABCDEF") -> None:
        self.output_as_list = False
        #: the account's webhook signing secret (GET /v1/webhooks/default/secret)
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.uploads: dict[str, tuple[str, bytes]] = {}  # file URL -> (file name, content)
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route(
            "POST", r"/v1/models/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)/predictions", self.create_model, kind="submit"
        )
        self.route("POST", r"/v1/predictions", self.create_version, kind="submit")
        self.route("GET", r"/v1/predictions/(?P<id>[a-z0-9]+)", self.get, kind="poll")
        self.route("POST", r"/v1/predictions/(?P<id>[a-z0-9]+)/cancel", self.cancel, kind="cancel")
        self.route("GET", r"/v1/models/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)", self.get_model)
        self.route("POST", r"/v1/files", self.create_file, kind="upload")

    def auth_error(self, req: Request) -> Response | None:
        if bearer_ok(req, self.key):
            return None
        return Response(
            401, {"title": "Unauthenticated", "status": 401, "detail": "You did not pass a valid authentication token"}
        )

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        if status == 429:
            return {
                "title": "Request was throttled",
                "status": 429,
                "detail": "Request was throttled. Your rate limit resets in ~1s.",
            }
        return {"title": message, "status": status, "detail": message}

    def create_model(self, req: Request) -> Response:
        model = f"{req.match.group('owner')}/{req.match.group('name')}" if req.match else ""
        if model not in OFFICIAL:
            return Response(
                404, {"title": "Not found", "status": 404, "detail": "The requested resource could not be found."}
            )
        return self._create(req, model, MODELS[model])

    def get_model(self, req: Request) -> Response:
        model = f"{req.match.group('owner')}/{req.match.group('name')}" if req.match else ""
        if model not in MODELS:
            return Response(
                404, {"title": "Not found", "status": 404, "detail": "The requested resource could not be found."}
            )
        owner, name = model.split("/")
        return Response(
            200,
            {
                "url": f"https://replicate.com/{model}",
                "owner": owner,
                "name": name,
                "visibility": "public",
                "is_official": model in OFFICIAL,
                "latest_version": {"id": MODELS[model], "created_at": _now()},
            },
        )

    def create_version(self, req: Request) -> Response:
        version = req.json().get("version")
        model = next((m for m, v in MODELS.items() if v == version), None)
        if model is None:
            return Response(
                422,
                {
                    "title": "Invalid version or not permitted",
                    "status": 422,
                    "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
                },
            )
        return self._create(req, model, str(version))

    def _create(self, req: Request, model: str, version: str) -> Response:
        body = req.json()
        inputs = body.get("input")
        if not isinstance(inputs, dict) or not inputs.get("prompt"):
            return Response(
                422, {"title": "Input validation failed", "status": 422, "detail": "- input: prompt is required"}
            )
        if model == "kwaivgi/kling-v2.1" and not inputs.get("start_image"):
            return Response(
                422, {"title": "Input validation failed", "status": 422, "detail": "- input: start_image is required"}
            )
        # "end_image: Last frame of the video (pro mode is required when this parameter is set)" (the model's page)
        if model == "kwaivgi/kling-v2.1" and inputs.get("end_image") and inputs.get("mode", "standard") != "pro":
            return Response(
                422,
                {"title": "Input validation failed", "status": 422, "detail": "- input: end_image requires mode pro"},
            )
        if model in ("luma/modify-video", "kwaivgi/kling-o1"):
            refused = self._modify_problem(inputs) if model == "luma/modify-video" else _kling_o1_problem(inputs)
            if refused:
                return Response(
                    422, {"title": "Input validation failed", "status": 422, "detail": f"- input: {refused}"}
                )
        task = self.new_task(inputs, task_id=secrets.token_hex(13)[:26])
        task.extra["cancel_after"] = req.header("cancel-after")
        task.extra["events_filter"] = body.get("webhook_events_filter")
        task.extra.update(
            model=model,
            version=version,
            image=inputs.get("first_frame_image") or inputs.get("start_image") or inputs.get("image"),
            last_image=inputs.get("end_image"),
        )
        self.schedule_webhook(task, body.get("webhook"))
        return Response(201, self._prediction(task, "starting"))

    def _modify_problem(self, inputs: dict[str, Any]) -> str | None:
        video = inputs.get("video")
        if not isinstance(video, str) or not video.startswith(("http://", "https://", "data:video/")):
            return "video is required (a URL of the video to modify)"
        if inputs.get("mode", "adhere_1") not in MODIFY_MODES:
            return f"mode must be one of {', '.join(sorted(MODIFY_MODES))}"
        upload = self.uploads.get(video)
        if upload is not None and len(upload[1]) > MAX_VIDEO_BYTES:
            return "video: Maximum video size is 100mb"
        return None

    def create_file(self, req: Request) -> Response:
        from email.parser import BytesParser
        from email.policy import default

        head = f"Content-Type: {req.header('content-type')}\r\n\r\n".encode()
        message = BytesParser(policy=default).parsebytes(head + req.body)
        parts = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "content"]
        part = parts[0] if parts else None
        if part is None:
            return Response(400, {"title": "Bad request", "status": 400, "detail": "content is required"})
        data = part.get_payload(decode=True) or b""
        assert isinstance(data, bytes)  # decode=True on a leaf part gives its bytes
        file_id = secrets.token_hex(12)
        url = f"{self.url}/v1/files/{file_id}"
        name = part.get_filename() or "file"
        self.uploads[url] = (name, data)
        return Response(
            201,
            {
                "id": file_id,
                "name": name,
                "content_type": part.get_content_type(),
                "size": len(data),
                "etag": file_id,
                "checksums": {},
                "metadata": {},
                "created_at": _now(),
                "expires_at": None,
                "urls": {"get": url},
            },
        )

    def _prediction(self, task: Any, status: str) -> dict[str, Any]:
        base = f"{self.url}/v1/predictions/{task.id}"
        pred: dict[str, Any] = {
            "id": task.id,
            "model": task.extra["model"],
            "version": task.extra["version"],
            "input": task.input,
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": status,
            "created_at": _now(),
            "started_at": None,
            "completed_at": None,
            "urls": {"get": base, "cancel": base + "/cancel"},
            "metrics": {},
        }
        if status == "succeeded":
            url = self.output_url()
            pred.update(
                output=[url] if self.output_as_list else url,
                completed_at=_now(),
                metrics={"predict_time": 42.1, "total_time": 45.0},
            )
        return pred

    def webhook_payload(self, task: Any) -> Any:
        status = {"running": "processing", "succeed": "succeeded"}.get(self.phase(task), "failed")
        return self._prediction(task, status)

    def webhook_headers(self, payload: bytes) -> dict[str, str]:
        # Standard Webhooks, signed by the reference library (not Kinema's own code, which verifies it)
        from standardwebhooks.webhooks import Webhook

        msg_id = "msg_" + secrets.token_hex(8)
        now = dt.datetime.now(dt.UTC)
        signature = Webhook(self.webhook_secret).sign(msg_id, now, payload.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}

    def get(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(
                404, {"title": "Not found", "status": 404, "detail": "The requested resource could not be found."}
            )
        if task.extra.get("canceled"):
            return Response(200, self._prediction(task, "canceled"))
        phase = self.advance(task)
        status = {"queued": "starting", "running": "processing", "succeed": "succeeded"}.get(phase, "failed")
        pred = self._prediction(task, status)
        if phase == "fail":
            pred["error"] = "Prediction failed: the model crashed (exit code 1)"
        elif phase == "moderate":
            pred["error"] = "NSFW content detected. Try running it again, or try a different prompt."
        return Response(200, pred)

    def cancel(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, {"title": "Not found", "status": 404, "detail": "Not found."})
        task.extra["canceled"] = True
        return Response(200, self._prediction(task, "canceled"))


def _kling_o1_problem(inputs: dict[str, Any]) -> str | None:
    """Why kwaivgi/kling-o1 refuses an input (its schema): at most 7 reference images, mode std/pro, 5 or 10 s."""
    refs = inputs.get("reference_images", [])
    if not isinstance(refs, list) or len(refs) > 7:
        return "reference_images: at most 7 images (4 with a reference video)"
    if any(not (isinstance(r, str) and r.startswith(("http://", "https://", "data:image/"))) for r in refs):
        return "reference_images: each must be an image URL"
    if inputs.get("mode", "pro") not in ("std", "pro"):
        return "mode must be std or pro"
    if inputs.get("duration", 5) not in (5, 10):
        return "duration must be 5 or 10"
    return None
