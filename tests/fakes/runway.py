"""Fake of Runway's API (reference/provider-apis.md §1): POST /v1/text_to_video and /v1/image_to_video,
GET and DELETE /v1/tasks/{id}; Bearer auth plus the required X-Runway-Version header; errors {"error": "..."};
tasks PENDING / THROTTLED / RUNNING / SUCCEEDED / FAILED (failure, failureCode) / CANCELLED with credits."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from .base import FakeServer, Request, Response, bearer_ok

VERSION = "2024-11-06"
T2V = {"gen4.5": ({"1280:720", "720:1280"}, set(range(2, 11))),
       "veo3.1": ({"1280:720", "720:1280", "1080:1920", "1920:1080"}, {4, 6, 8}),
       "veo3.1_fast": ({"1280:720", "720:1280", "1080:1920", "1920:1080"}, {4, 6, 8})}  # fmt: skip
_TURBO = {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"}
I2V = {"gen4.5": (_TURBO, set(range(2, 11))), "gen4_turbo": (_TURBO, set(range(2, 11))), "veo3.1": T2V["veo3.1"],
       "veo3.1_fast": T2V["veo3.1_fast"]}  # fmt: skip
#: models the API no longer serves (gone from runwayml 5.24.0's create overloads)
RETIRED = {"gen3a_turbo", "veo3"}
#: promptImage data: URIs are accepted "up to 5MB" (runwayml types/image_to_video_create_params.py); the fake
#: takes the stricter reading, 5 * 10^6 characters of URI
DATA_URI_LIMIT = 5_000_000
CREDITS_PER_SECOND = {"gen4.5": 12, "gen4_turbo": 5, "veo3.1": 20, "veo3.1_fast": 10}


class FakeRunway(FakeServer):
    provider = "runway"

    def __init__(self, video: bytes, key: str = "key_runway_test_0123456789abcdef") -> None:
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/text_to_video", lambda r: self.create(r, T2V), kind="submit")
        self.route("POST", r"/v1/image_to_video", lambda r: self.create(r, I2V), kind="submit")
        self.route("GET", r"/v1/tasks/(?P<id>[0-9a-f-]+)", self.retrieve, kind="poll")
        self.route("DELETE", r"/v1/tasks/(?P<id>[0-9a-f-]+)", self.delete, kind="cancel")

    def auth_error(self, req: Request) -> Response | None:
        if not bearer_ok(req, self.key):
            return Response(401, {"error": "Invalid API key"})
        if req.header("x-runway-version") != VERSION:
            return Response(400, {"error": f"Invalid or missing X-Runway-Version header; use {VERSION}"})
        return None

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        return {"error": message}

    def create(self, req: Request, table: dict[str, tuple[set[str], set[int]]]) -> Response:
        body = req.json()
        model = body.get("model")
        if model in RETIRED:
            return Response(400, {"error": f"Invalid parameter 'model': {model!r} is no longer available"})
        if model not in table:
            return Response(400, {"error": f"Invalid parameter 'model': {model!r}"})
        ratios, durations = table[model]
        if body.get("ratio") not in ratios:
            return Response(400, {"error": f"Invalid parameter 'ratio': {body.get('ratio')!r}"})
        if "duration" in body and body["duration"] not in durations:
            return Response(400, {"error": f"Invalid parameter 'duration': {body.get('duration')!r}"})
        text = body.get("promptText")
        if table is T2V and (not isinstance(text, str) or not text or len(text) > 1000):
            return Response(400, {"error": "Invalid parameter 'promptText'"})
        if table is I2V and not body.get("promptImage"):
            return Response(400, {"error": "Invalid parameter 'promptImage'"})
        image = body.get("promptImage")
        if isinstance(image, str) and image.startswith("data:") and len(image) > DATA_URI_LIMIT:
            return Response(400, {"error": "Invalid parameter 'promptImage': data URIs must be 5MB or smaller"})
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra["image"] = body.get("promptImage")
        return Response(200, {"id": task.id})

    def retrieve(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, {"error": "Task not found"})
        if task.extra.get("cancelled"):
            phase = "cancelled"
        else:
            phase = self.advance(task)
        seconds = int(task.input.get("duration") or 5)
        credits = CREDITS_PER_SECOND.get(task.input["model"], 10) * seconds
        obj: dict[str, Any] = {"id": task.id,
                               "createdAt": dt.datetime.fromtimestamp(task.created, dt.UTC).isoformat()}  # fmt: skip
        if phase in ("throttled", "queued", "running"):
            obj["status"] = {"throttled": "THROTTLED", "queued": "PENDING", "running": "RUNNING"}[phase]
            obj["estimatedCost"] = {"credits": float(credits)}
            if phase == "running":
                obj["progress"] = 0.5
        elif phase == "succeed":
            obj.update(status="SUCCEEDED", output=[self.output_url()], cost={"credits": credits})
        elif phase == "fail":
            obj.update(status="FAILED", failure="An unexpected error occurred while generating.",
                       failureCode="INTERNAL", cost={"credits": 0})  # fmt: skip
        elif phase == "moderate":
            obj.update(status="FAILED", failure="The prompt was flagged by our content moderation system.",
                       failureCode="SAFETY.INPUT.TEXT", cost={"credits": 0})  # fmt: skip
        else:
            obj.update(status="CANCELLED", cost={"credits": 0})
        return Response(200, obj)

    def delete(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, {"error": "Task not found"})
        task.extra["cancelled"] = True
        return Response(204, None)
