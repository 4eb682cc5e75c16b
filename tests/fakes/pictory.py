"""Fake of Pictory's AI Studio API (reference/provider-apis.md §7): POST /pictoryapis/v1/aistudio/videos returns
{success, data: {jobId}}; GET /pictoryapis/v1/jobs/{jobId} answers {job_id, success, data: {status: in-progress |
completed (url, aiCreditsUsed, ...) | failed (error_code, error_message)}}; the raw key in Authorization (no
Bearer); 400 {code: INVALID_REQUEST_BODY, message, fields}; 401 {"message": "Unauthorized"}. ``referenceImageUrls``
is 1 to 3 image URIs and excludes ``firstFrameImageUrl`` and ``extendVideoUrl`` (docs.pictory.ai guides/ai-studio/
video-from-reference-images); the fake records it as ``task.extra["references"]``."""

from __future__ import annotations

import uuid
from typing import Any

from .base import FakeServer, Request, Response

MODELS = {
    "veo3.1": ({"16:9", "9:16"}, {"4s", "6s", "8s"}, 20),
    "veo3.1_fast": ({"16:9", "9:16"}, {"4s", "6s", "8s"}, 10),
    "pixverse5.5": ({"16:9", "9:16", "1:1", "3:4", "4:3"}, {"5s", "8s", "10s"}, 1.6),
}
PREFIX = "/pictoryapis"


class FakePictory(FakeServer):
    provider = "pictory"

    def __init__(self, video: bytes, key: str = "pictai_test0123456789abcdef") -> None:
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", PREFIX + r"/v1/aistudio/videos", self.create, kind="submit")
        self.route("GET", PREFIX + r"/v1/jobs/(?P<id>[0-9a-f-]+)", self.job, kind="poll")

    def auth_error(self, req: Request) -> Response | None:
        if req.header("authorization") == self.key:  # raw key; "Bearer <key>" is refused
            return None
        return Response(401, {"message": "Unauthorized"})

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        return {"message": message, "code": code}

    def _invalid(self, name: str, error: str) -> Response:
        return Response(
            400,
            {
                "code": "INVALID_REQUEST_BODY",
                "message": "Invalid request body",
                "fields": [{"name": name, "errors": [error]}],
            },
        )

    def create(self, req: Request) -> Response:
        body = req.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not 5 <= len(prompt) <= 5000:
            return self._invalid("prompt", "must be 5 to 5000 characters")
        model = body.get("model", "pixverse5.5")
        if model not in MODELS:
            return self._invalid("model", f"must be one of {sorted(MODELS)}")
        ratios, durations, _ = MODELS[model]
        if body.get("aspectRatio", sorted(ratios)[0]) not in ratios:
            return self._invalid("aspectRatio", f"must be one of {sorted(ratios)}")
        if body.get("duration", sorted(durations)[0]) not in durations:
            return self._invalid("duration", f"must be one of {sorted(durations)}")
        if sum(1 for k in ("firstFrameImageUrl", "extendVideoUrl", "referenceImageUrls") if k in body) > 1:
            return self._invalid(
                "firstFrameImageUrl", "only one of firstFrameImageUrl, extendVideoUrl, referenceImageUrls"
            )
        refs = body.get("referenceImageUrls")
        if refs is not None and not (isinstance(refs, list) and 1 <= len(refs) <= 3):
            return self._invalid("referenceImageUrls", "must be an array of 1 to 3 image URLs")
        if refs is not None and not all(isinstance(r, str) and r.startswith(("http://", "https://")) for r in refs):
            return self._invalid("referenceImageUrls", "each entry must be a valid URI")
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra["image"] = body.get("firstFrameImageUrl")
        task.extra["references"] = refs
        self.schedule_webhook(task, body.get("webhook"))
        return Response(200, {"success": True, "data": {"jobId": task.id}})

    def webhook_payload(self, task: Any) -> Any:
        done = self.phase(task) == "succeed"
        return {"job_id": task.id, "success": done, "data": {"status": "completed" if done else "failed"}}

    def job(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(
                404,
                {
                    "job_id": req.match.group("id") if req.match else None,
                    "success": False,
                    "data": {"status": "failed", "error_code": "5000", "error_message": "JOB_NOT_FOUND"},
                },
            )
        phase = self.advance(task)
        if phase in ("queued", "running"):
            return Response(200, {"job_id": task.id, "success": True, "data": {"status": "in-progress"}})
        if phase == "succeed":
            model = task.input.get("model", "pixverse5.5")
            seconds = int(str(task.input.get("duration", "5s")).rstrip("s"))
            return Response(
                200,
                {
                    "job_id": task.id,
                    "success": True,
                    "data": {
                        "status": "completed",
                        "url": self.output_url(),
                        "duration": f"{seconds}s",
                        "width": 1280,
                        "height": 720,
                        "thumbnailImageUrl": f"{self.url}/assets/input.png",
                        "lastFrameImageUrl": f"{self.url}/assets/input.png",
                        "aiCreditsUsed": MODELS[model][2] * seconds,
                    },
                },
            )
        if phase == "cleaned":  # a job status listed on docs.pictory.ai get-job-by-id
            return Response(200, {"job_id": task.id, "success": True, "data": {"status": "cleaned"}})
        if phase == "moderate":
            data = {
                "status": "failed",
                "error_code": "CONTENT_POLICY_VIOLATION",
                "error_message": "The prompt violates the content policy",
            }
        else:
            data = {
                "status": "failed",
                "error_code": "GENERATION_FAILED",
                "error_message": "Video generation failed at the model provider",
            }
        return Response(200, {"job_id": task.id, "success": False, "data": data})
