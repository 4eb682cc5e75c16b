"""Fake of the OpenAI Videos API (reference/provider-apis.md §3): POST /v1/videos (multipart or JSON),
GET /v1/videos/{id}, GET /v1/videos/{id}/content; Bearer auth; errors {"error": {message, type, param, code}}."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .base import FakeServer, Request, Response, bearer_ok, parse_multipart

SIZES = {"720x1280", "1280x720", "1024x1792", "1792x1024"}
PRO_SIZES = SIZES | {"1080x1920", "1920x1080"}
MODELS = {
    "sora-2": SIZES,
    "sora-2-pro": PRO_SIZES,
    "sora-2-2025-10-06": SIZES,
    "sora-2-2025-12-08": SIZES,
    "sora-2-pro-2025-10-06": PRO_SIZES,
}
SECONDS = {"4", "8", "12"}


class FakeOpenAIVideos(FakeServer):
    provider = "openai"

    def __init__(self, video: bytes, key: str = "sk-test-openai-0123456789") -> None:
        self.poll_after_ms: int | None = None
        self.extra_models: set[str] = set()  # a compatible server's own models
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/videos", self.create, kind="submit")
        self.route("GET", r"/v1/videos/(?P<id>video_[0-9a-f]+)", self.retrieve, kind="poll")
        self.route("GET", r"/v1/videos/(?P<id>video_[0-9a-f]+)/content", self.content, kind="download")

    def auth_error(self, req: Request) -> Response | None:
        if bearer_ok(req, self.key):
            return None
        return Response(401, self.error_body(401, "Incorrect API key provided.", "invalid_api_key"))

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> Any:
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 429:
            kind = "rate_limit_exceeded"
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def _bad(self, message: str, param: str) -> Response:
        return Response(400, self.error_body(400, message, "invalid_value", param))

    def create(self, req: Request) -> Response:
        if (req.header("content-type") or "").startswith("multipart/form-data"):
            fields, files = parse_multipart(req)
        else:
            fields, files = {k: str(v) for k, v in req.json().items()}, {}
        prompt = fields.get("prompt")
        if not prompt:
            return self._bad("Missing required parameter: 'prompt'.", "prompt")
        model = fields.get("model", "sora-2")
        if model not in MODELS and model not in self.extra_models:
            return self._bad(f"Invalid value: '{model}'. Supported values are: {', '.join(MODELS)}.", "model")
        seconds = fields.get("seconds", "4")
        size = fields.get("size", "720x1280")
        if model in MODELS:
            if seconds not in SECONDS:
                return self._bad(f"Invalid value: '{seconds}'. Supported values are: '4', '8', and '12'.", "seconds")
            if size not in MODELS[model]:
                return self._bad(f"Invalid value: '{size}'. Supported values are: {sorted(MODELS[model])}.", "size")
        task = self.new_task(
            {
                "prompt": prompt,
                "model": model,
                "seconds": seconds,
                "size": size,
                "input_reference": files.get("input_reference"),
            },
            task_id="video_" + secrets.token_hex(8),
        )
        task.extra["image"] = files.get("input_reference")
        return Response(200, self._video(task, "queued"))

    def _video(self, task: Any, phase: str) -> dict[str, Any]:
        status = {"queued": "queued", "running": "in_progress", "succeed": "completed"}.get(phase, "failed")
        obj: dict[str, Any] = {
            "id": task.id,
            "object": "video",
            "model": task.input["model"],
            "status": status,
            "progress": {"queued": 0, "in_progress": 50, "completed": 100}.get(status, 0),
            "created_at": int(task.created),
            "completed_at": None,
            "expires_at": None,
            "seconds": task.input["seconds"],
            "size": task.input["size"],
            "prompt": task.input["prompt"],
            "remixed_from_video_id": None,
            "error": None,
        }
        if status == "completed":
            obj["completed_at"] = int(time.time())
            obj["expires_at"] = int(time.time()) + 3600
        if phase == "fail":
            obj["error"] = {"code": "internal_error", "message": "Video generation failed due to an internal error."}
        elif phase == "moderate":
            obj["error"] = {
                "code": "moderation_blocked",
                "message": "Your request was blocked by our moderation system.",
            }
        return obj

    def retrieve(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, self.error_body(404, "Video not found.", "not_found"))
        headers = {"openai-poll-after-ms": str(self.poll_after_ms)} if self.poll_after_ms is not None else {}
        return Response(200, self._video(task, self.advance(task)), headers)

    def content(self, req: Request) -> Response:
        denied = self.auth_error(req)
        if denied is not None:
            return denied
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, self.error_body(404, "Video not found.", "not_found"))
        if self.phase(task) != "succeed":
            return Response(400, self.error_body(400, "Video is not ready yet.", "video_not_ready"))
        return self.serve_video()
