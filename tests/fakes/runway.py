"""Fake of Runway's API (reference/provider-apis.md §1): POST /v1/text_to_video, /v1/image_to_video and
/v1/video_to_video, GET and DELETE /v1/tasks/{id}; Bearer auth plus the required X-Runway-Version header; errors
{"error": "..."}; tasks PENDING / THROTTLED / RUNNING / SUCCEEDED / FAILED (failure, failureCode) / CANCELLED with
credits.

image_to_video's ``promptImage`` is a URI or a list of ``{uri, position}`` where the model's type allows positions
(runwayml 5.24.0 types/image_to_video_create_params.py: "first" only for gen4.5 / gen4_turbo; "first" and "last"
for veo3.1 / veo3.1_fast, which refuse a last frame alone). video_to_video takes aleph2's documented fields only
(types/video_to_video_create_params.py ``Variant0``). Ephemeral uploads: POST /v1/uploads answers a pre-signed
form (``uploadUrl``, ``fields``, ``runwayUri``) that the file is POSTed to, as runwayml ``uploads.create_ephemeral``
does; ``uploads`` records what arrived, and a ``runway://`` URI is accepted only once its file has."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from .base import FakeServer, Request, Response, bearer_ok

VERSION = "2024-11-06"
T2V = {
    "gen4.5": ({"1280:720", "720:1280"}, set(range(2, 11))),
    "veo3.1": ({"1280:720", "720:1280", "1080:1920", "1920:1080"}, {4, 6, 8}),
    "veo3.1_fast": ({"1280:720", "720:1280", "1080:1920", "1920:1080"}, {4, 6, 8}),
}
_TURBO = {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"}
I2V = {
    "gen4.5": (_TURBO, set(range(2, 11))),
    "gen4_turbo": (_TURBO, set(range(2, 11))),
    "veo3.1": T2V["veo3.1"],
    "veo3.1_fast": T2V["veo3.1_fast"],
}
#: models the API no longer serves (gone from runwayml 5.24.0's create overloads)
RETIRED = {"gen3a_turbo", "veo3", "gen4_aleph"}
#: promptImage data: URIs are accepted "up to 5MB" (runwayml types/image_to_video_create_params.py); the fake
#: takes the stricter reading, 5 * 10^6 characters of URI
DATA_URI_LIMIT = 5_000_000
CREDITS_PER_SECOND = {"gen4.5": 12, "gen4_turbo": 5, "veo3.1": 20, "veo3.1_fast": 10, "aleph2": 28}
#: promptImage positions each model's type takes (Literal["first"] or Literal["first", "last"])
POSITIONS = {
    "gen4.5": {"first"},
    "gen4_turbo": {"first"},
    "veo3.1": {"first", "last"},
    "veo3.1_fast": {"first", "last"},
}
V2V_MODELS = {"aleph2"}
#: aleph2's body (Variant0): everything else is refused, as a strict schema does
V2V_FIELDS = {
    "model",
    "videoUri",
    "promptText",
    "ratio",
    "seed",
    "keyframes",
    "contentModeration",
    "outputFormat",
    "proresProfile",
    "targetAspectRatio",
}


class FakeRunway(FakeServer):
    provider = "runway"

    def __init__(self, video: bytes, key: str = "key_runway_test_0123456789abcdef") -> None:
        self.uploads: dict[str, tuple[str, bytes]] = {}  # runway:// URI -> (file name, bytes) of finished uploads
        self._pending: dict[str, str] = {}  # upload token -> file name announced on POST /v1/uploads
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/text_to_video", lambda r: self.create(r, T2V), kind="submit")
        self.route("POST", r"/v1/image_to_video", lambda r: self.create(r, I2V), kind="submit")
        self.route("GET", r"/v1/tasks/(?P<id>[0-9a-f-]+)", self.retrieve, kind="poll")
        self.route("DELETE", r"/v1/tasks/(?P<id>[0-9a-f-]+)", self.delete, kind="cancel")
        self.route("POST", r"/v1/video_to_video", self.video_to_video, kind="submit")
        self.route("POST", r"/v1/uploads", self.start_upload, kind="other")
        self.route("POST", r"/upload-bucket/(?P<token>[A-Za-z0-9_-]+)", self.receive_upload, kind="upload")

    def auth_error(self, req: Request) -> Response | None:
        if req.path.startswith("/upload-bucket/"):  # the pre-signed form carries its own authority, like S3's
            return None
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
        if table is I2V:
            refused = self._prompt_image(model, image)
            if refused:
                return Response(400, {"error": f"Invalid parameter 'promptImage': {refused}"})
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
        obj: dict[str, Any] = {"id": task.id, "createdAt": dt.datetime.fromtimestamp(task.created, dt.UTC).isoformat()}
        if phase in ("throttled", "queued", "running"):
            obj["status"] = {"throttled": "THROTTLED", "queued": "PENDING", "running": "RUNNING"}[phase]
            obj["estimatedCost"] = {"credits": float(credits)}
            if phase == "running":
                obj["progress"] = 0.5
        elif phase == "succeed":
            obj.update(status="SUCCEEDED", output=[self.output_url()], cost={"credits": credits})
        elif phase == "fail":
            obj.update(
                status="FAILED",
                failure="An unexpected error occurred while generating.",
                failureCode="INTERNAL",
                cost={"credits": 0},
            )
        elif phase == "moderate":
            obj.update(
                status="FAILED",
                failure="The prompt was flagged by our content moderation system.",
                failureCode="SAFETY.INPUT.TEXT",
                cost={"credits": 0},
            )
        else:
            obj.update(status="CANCELLED", cost={"credits": 0})
        return Response(200, obj)

    def delete(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, {"error": "Task not found"})
        task.extra["cancelled"] = True
        return Response(204, None)

    def _uri_problem(self, uri: Any, kind: str) -> str | None:
        """Why Runway would refuse this input URI (an https URL, a runway:// upload or a data: URI up to 5MB)."""
        if not isinstance(uri, str) or not uri:
            return "must be a non-empty string"
        if uri.startswith("https://"):
            return None
        if uri.startswith("runway://"):
            return None if uri in self.uploads else f"unknown upload {uri!r}"
        if uri.startswith("data:"):
            if not uri.startswith(f"data:{kind}/") or ";base64," not in uri:
                return f"a data URI here must be a base64 {kind}"
            return "data URIs must be 5MB or smaller" if len(uri) > DATA_URI_LIMIT else None
        return "must be an HTTPS URL, a Runway upload URI or a data URI"

    def _prompt_image(self, model: str, image: Any) -> str | None:
        if isinstance(image, str):
            return self._uri_problem(image, "image")
        if not isinstance(image, list) or not image:
            return "must be a URI or a list of {uri, position}"
        positions = []
        for item in image:
            if not isinstance(item, dict) or set(item) != {"uri", "position"}:
                return "each item must be exactly {uri, position}"
            if item["position"] not in POSITIONS[model]:
                return f"position {item['position']!r} is not supported by {model}"
            problem = self._uri_problem(item["uri"], "image")
            if problem:
                return problem
            positions.append(item["position"])
        if len(set(positions)) != len(positions):
            return "each position may appear once"
        if "first" not in positions:
            return f"{model} does not support generating with only a last frame"
        return None

    def video_to_video(self, req: Request) -> Response:
        body = req.json()
        model = body.get("model")
        if model in RETIRED:
            return Response(400, {"error": f"Invalid parameter 'model': {model!r} is no longer available"})
        if model not in V2V_MODELS:
            return Response(400, {"error": f"Invalid parameter 'model': {model!r}"})
        unknown = sorted(set(body) - V2V_FIELDS)
        if unknown:
            return Response(400, {"error": f"Invalid parameter '{unknown[0]}': not allowed for {model}"})
        problem = self._uri_problem(body.get("videoUri"), "video")
        if problem:
            return Response(400, {"error": f"Invalid parameter 'videoUri': {problem}"})
        text = body.get("promptText")
        if text is not None and (not isinstance(text, str) or not text or len(text) > 1000):
            return Response(400, {"error": "Invalid parameter 'promptText'"})
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= 4294967295):
            return Response(400, {"error": "Invalid parameter 'seed'"})
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra["video"] = body["videoUri"]
        return Response(200, {"id": task.id})

    def start_upload(self, req: Request) -> Response:
        body = req.json()
        if body.get("type") != "ephemeral" or not isinstance(body.get("filename"), str) or not body["filename"]:
            return Response(400, {"error": "Invalid parameter: filename and type 'ephemeral' are required"})
        token = uuid.uuid4().hex
        with self.lock:
            self._pending[token] = body["filename"]
        return Response(
            200,
            {
                "uploadUrl": f"{self.url}/upload-bucket/{token}",
                "fields": {"key": f"uploads/{token}", "policy": "fake-policy"},
                "runwayUri": f"runway://uploads/{token}",
            },
        )

    def receive_upload(self, req: Request) -> Response:
        from .base import parse_multipart

        token = req.match.group("token") if req.match else ""
        with self.lock:
            name = self._pending.pop(token, None)
        fields, files = parse_multipart(req)
        if name is None or fields.get("key") != f"uploads/{token}" or "file" not in files:
            return Response(403, b"<Error><Code>AccessDenied</Code></Error>", content_type="application/xml")
        with self.lock:
            self.uploads[f"runway://uploads/{token}"] = (files["file"][0] or name, files["file"][1])
        return Response(204, None)
