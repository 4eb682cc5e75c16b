"""Fake of Luma Dream Machine (reference/provider-apis.md §2): POST /generations/video (and the legacy
POST /generations), GET /generations/{id}, DELETE /generations/{id}; Bearer auth; errors {"detail": "..."};
Generation state queued / dreaming / completed / failed with failure_reason; the video at assets.video.
``keyframes`` may hold ``frame0`` and/or ``frame1``, each ``{type: image, url}`` or ``{type: generation, id}``
(lumaai 1.21.0 types/generations/video_create_params.py); any other key is refused.

POST /generations/video/modify (modify-video) needs ``generation_type: "modify_video"``, ``media: {url}`` (a URL:
Luma fetches the clip), ``mode`` one of adhere_1..3 / flex_1..3 / reimagine_1..3 and ``model`` ray-2 or ray-flash-2,
all required (lumaai 1.21.0 types/generations/video_modify_params.py); ``prompt``, ``first_frame: {url}`` and
``callback_url`` are optional. The fake records the clip's URL as ``task.extra["media"]``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from .base import FakeServer, Request, Response, bearer_ok

MODELS = {"ray-2", "ray-flash-2", "ray-1-6"}
RATIOS = {"1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"}
PREFIX = "/dream-machine/v1"
MODIFY_MODES = {f"{kind}_{n}" for kind in ("adhere", "flex", "reimagine") for n in (1, 2, 3)}


class FakeLuma(FakeServer):
    provider = "luma"

    def __init__(self, video: bytes, key: str = "luma-test-key-0123456789abcdef") -> None:
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", PREFIX + r"/generations/video/modify", self.modify, kind="submit")
        self.route("POST", PREFIX + r"/generations/video", self.create, kind="submit")
        self.route("POST", PREFIX + r"/generations", self.create, kind="submit")
        self.route("GET", PREFIX + r"/generations/(?P<id>[0-9a-f-]{36})", self.get, kind="poll")
        self.route("DELETE", PREFIX + r"/generations/(?P<id>[0-9a-f-]{36})", self.delete, kind="cancel")

    def auth_error(self, req: Request) -> Response | None:
        if bearer_ok(req, self.key):
            return None
        return Response(401, {"detail": "Invalid API key is provided"})

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        return {"detail": message}

    def create(self, req: Request) -> Response:
        body = req.json()
        if body.get("model") not in MODELS:
            return Response(400, {"detail": f"Invalid model: {body.get('model')!r}"})
        if body.get("aspect_ratio", "16:9") not in RATIOS:
            return Response(400, {"detail": f"Invalid aspect_ratio: {body.get('aspect_ratio')!r}"})
        keyframes = body.get("keyframes") or {}
        if not isinstance(keyframes, dict) or set(keyframes) - {"frame0", "frame1"}:
            return Response(400, {"detail": "keyframes may hold frame0 and frame1 only"})
        for name, frame in keyframes.items():
            refused = _frame_problem(frame)
            if refused:
                return Response(400, {"detail": f"keyframes.{name} {refused}"})
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra["image"] = keyframes.get("frame0")
        task.extra["last_image"] = keyframes.get("frame1")
        self.schedule_webhook(task, body.get("callback_url"))
        return Response(201, self._generation(task, "queued"))

    def modify(self, req: Request) -> Response:
        body = req.json()
        if body.get("generation_type") != "modify_video":
            return Response(400, {"detail": "generation_type must be 'modify_video'"})
        if body.get("model") not in ("ray-2", "ray-flash-2"):
            return Response(400, {"detail": f"Invalid model: {body.get('model')!r}"})
        if body.get("mode") not in MODIFY_MODES:
            return Response(400, {"detail": f"Invalid mode: {body.get('mode')!r}; one of {sorted(MODIFY_MODES)}"})
        media = body.get("media")
        if not isinstance(media, dict) or not str(media.get("url", "")).startswith(("http://", "https://")):
            return Response(400, {"detail": "media.url must be the URL of the video to modify"})
        first = body.get("first_frame")
        if first is not None and (not isinstance(first, dict) or not str(first.get("url", "")).startswith("http")):
            return Response(400, {"detail": "first_frame.url must be an image URL"})
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra["media"] = media["url"]
        self.schedule_webhook(task, body.get("callback_url"))
        return Response(201, self._generation(task, "queued"))

    def webhook_payload(self, task: Any) -> Any:
        return self._generation(task, self.phase(task))  # the full Generation, unsigned

    def _generation(self, task: Any, phase: str) -> dict[str, Any]:
        state = {"queued": "queued", "running": "dreaming", "succeed": "completed"}.get(phase, "failed")
        reason = None
        if phase == "fail":
            reason = "Job failed due to an internal error"
        elif phase == "moderate":
            reason = "400: Prompt not allowed because advanced moderation failed"
        elif phase == "image_fetch":  # Luma could not download the keyframe image (lumalabs/ComfyUI-LumaAI-API#9)
            reason = "400: failed to moderate image"
        return {
            "id": task.id,
            "generation_type": "video",
            "state": state,
            "failure_reason": reason,
            "created_at": dt.datetime.fromtimestamp(task.created, dt.UTC).isoformat(),
            "model": task.input["model"],
            "assets": {"video": self.output_url(), "image": None, "progress_video": None}
            if state == "completed"
            else None,
            "request": task.input,
        }

    def get(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return Response(404, {"detail": "Generation not found"})
        return Response(200, self._generation(task, self.advance(task)))

    def delete(self, req: Request) -> Response:
        if req.match and self.tasks.pop(req.match.group("id"), None) is not None:
            return Response(204, None)
        return Response(404, {"detail": "Generation not found"})


def _frame_problem(frame: Any) -> str | None:
    """Why Luma refuses a keyframe: it must be {type: image, url: http(s)} or {type: generation, id}."""
    if not isinstance(frame, dict):
        return "must be an object"
    if frame.get("type") == "image" and set(frame) == {"type", "url"} and str(frame["url"]).startswith("http"):
        return None
    if frame.get("type") == "generation" and set(frame) == {"type", "id"}:
        return None
    return "must be {type: image, url} or {type: generation, id}"
