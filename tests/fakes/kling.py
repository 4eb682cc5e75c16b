"""Fake of Kling's official API (reference/provider-apis.md §5): POST /v1/videos/{text2video|image2video},
GET /v1/videos/{family}/{task_id}; a per-request HS256 JWT (iss = access key, exp, nbf) checked on every call;
envelope {code, message, request_id, data}; task_status submitted / processing / succeed / failed.
``external_task_id`` (the client's own id, unique per account) is stored and the single-task query accepts it in
place of the task id. ``account_error(code)`` scripts the HTTP 429 account errors 1100-1102 and 1304.

image2video takes ``image_tail`` (the last frame) only where Kling's capability map lists start/end frames (model,
mode, duration; a tail alone only on kling-v1-6; not with camera_control; kling-v2-6 only without sound).
POST /v1/videos/multi-image2video takes exactly its documented fields: model_name kling-v1-6, image_list of 1 to 4
``{"image": URL or raw base64}``, a prompt, and the usual mode / duration / aspect_ratio / callback / external id."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Any

import jwt

from .base import FakeServer, Request, Response

MODELS = {
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
}
#: model -> (modes, durations, tail without a first frame) where image2video takes image_tail (capability map)
TAIL = {
    "kling-v1": ({"std", "pro"}, {"5"}, False),
    "kling-v1-6": ({"pro"}, {"5", "10"}, True),
    "kling-v2-5-turbo": ({"pro"}, {"5", "10"}, False),
    "kling-v2-6": ({"pro"}, {"5", "10"}, False),
}
MULTI_FIELDS = {
    "model_name",
    "image_list",
    "prompt",
    "negative_prompt",
    "mode",
    "duration",
    "aspect_ratio",
    "callback_url",
    "external_task_id",
}
FAMILIES = ("text2video", "image2video", "multi-image2video")


class FakeKling(FakeServer):
    provider = "kling"

    def __init__(
        self, video: bytes, key: str = "ak-kling-test-0123456789", secret: str = "sk-kling-secret-abcdef0123456789"
    ) -> None:
        self.secret = secret
        self.other_secrets = [secret]
        self.tokens_seen: list[str] = []
        self._next_id = 880000000000
        super().__init__(video, key)

    def setup_routes(self) -> None:
        for family in FAMILIES:
            self.route("POST", rf"/v1/videos/{family}", partial(self.create, family=family), kind="submit")
            self.route(
                "GET", rf"/v1/videos/{family}/(?P<id>[\w.:-]+)", partial(self.query, family=family), kind="poll"
            )

    def account_error(self, code: int, times: int = 1) -> None:
        """The next submits answer HTTP 429 with an account error code (1100-1102, 1304), as Kling does."""
        messages = {
            1100: "Account exception",
            1101: "Account in arrears",
            1102: "Resource pack exhausted or expired",
            1304: "IP is not in the whitelist",
        }
        self.inject("submit", status=429, times=times, body=self.envelope(code, messages[code]))

    def envelope(self, code: int, message: str, data: Any = None) -> dict[str, Any]:
        return {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        service_code = {429: 1302, 500: 5000, 502: 5000, 503: 5001, 504: 5002, 404: 1203}.get(status, 1200)
        return self.envelope(service_code, message)

    def auth_error(self, req: Request) -> Response | None:
        header = req.header("authorization") or ""
        if not header.startswith("Bearer "):
            return Response(401, self.envelope(1001, "Authorization is empty"))
        token = header[len("Bearer ") :]
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp", "nbf", "iss"]})
        except jwt.ExpiredSignatureError:
            return Response(401, self.envelope(1004, "Authorization is expired"))
        except jwt.ImmatureSignatureError:
            return Response(401, self.envelope(1003, "Authorization is not yet valid"))
        except jwt.InvalidTokenError:
            return Response(401, self.envelope(1002, "Authorization is invalid"))
        if claims.get("iss") != self.key:
            return Response(401, self.envelope(1002, "Authorization is invalid"))
        if claims["exp"] - time.time() > 1800 + 5:
            return Response(401, self.envelope(1002, "Authorization is invalid: exp too far"))
        self.tokens_seen.append(token)
        return None

    def create(self, req: Request, family: str) -> Response:
        body = req.json()
        if family == "multi-image2video":
            refused = self._multi_image(body)
            if refused:
                return Response(400, self.envelope(1201, refused))
        elif body.get("model_name", "kling-v1") not in MODELS:
            return Response(400, self.envelope(1201, f"model_name is invalid: {body.get('model_name')!r}"))
        duration = body.get("duration", "5")
        allowed = {str(d) for d in range(3, 16)} if body.get("model_name") == "kling-v3" else {"5", "10"}
        if not isinstance(duration, str) or duration not in allowed:
            return Response(400, self.envelope(1201, f"duration is invalid: {duration!r}"))
        if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
            return Response(400, self.envelope(1201, "aspect_ratio is invalid"))
        if body.get("mode", "std") not in ("std", "pro"):
            return Response(400, self.envelope(1201, "mode is invalid"))
        if family == "image2video":
            refused = self._image2video(body)
            if refused:
                return Response(400, self.envelope(1201, refused))
        if len(body.get("prompt", "")) > 2500:
            return Response(400, self.envelope(1201, "prompt is too long"))
        external = body.get("external_task_id")
        if external is not None and any(t.extra.get("external") == external for t in self.tasks.values()):
            return Response(400, self.envelope(1201, f"external_task_id {external!r} already exists"))
        with self.lock:
            self._next_id += 1
            task_id = str(self._next_id)
        task = self.new_task(body, task_id=task_id)
        task.extra.update(family=family, image=body.get("image") or body.get("image_list"), external=external)
        self.schedule_webhook(task, body.get("callback_url"))
        return Response(200, self.envelope(0, "SUCCEED", self._data(task, "submitted")))

    def webhook_payload(self, task: Any) -> Any:
        status = {"running": "processing", "succeed": "succeed"}.get(self.phase(task), "failed")
        return self._data(task, status)  # the task's data object, unsigned

    def _data(self, task: Any, status: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": task.id,
            "task_status": status,
            "task_info": {"external_task_id": task.extra.get("external")},
            "created_at": int(task.created * 1000),
            "updated_at": int(time.time() * 1000),
        }
        return data

    def query(self, req: Request, family: str) -> Response:
        wanted = req.match.group("id") if req.match else ""
        task = self.tasks.get(wanted) or next(
            (t for t in self.tasks.values() if t.extra.get("external") == wanted), None
        )
        if task is None or task.extra.get("family") != family:
            return Response(404, self.envelope(1203, "task not found"))
        phase = self.advance(task)
        status = {"queued": "submitted", "running": "processing", "succeed": "succeed"}.get(phase, "failed")
        data = self._data(task, status)
        if status == "succeed":
            data["task_result"] = {
                "videos": [{"id": "v1", "url": self.output_url(), "duration": task.input.get("duration", "5")}]
            }
            data["final_unit_deduction"] = "1.5"
        elif phase == "fail":
            data["task_status_msg"] = "Generation failed: internal error, please retry"
        elif phase == "moderate":
            data["task_status_msg"] = "Failure to pass the risk control system"
        return Response(200, self.envelope(0, "SUCCEED", data))

    @staticmethod
    def _image_ok(value: Any) -> bool:
        return isinstance(value, str) and bool(value) and not value.startswith("data:")

    def _image2video(self, body: dict[str, Any]) -> str | None:
        """Why image2video refuses this body, or None."""
        image, tail = body.get("image"), body.get("image_tail")
        if image is None and tail is None:
            return "image is required (or image_tail)"
        for name, value in (("image", image), ("image_tail", tail)):
            if value is not None and not self._image_ok(value):
                return f"{name} is invalid (URL or raw base64 without data: prefix)"
        if tail is None:
            return None
        model = body.get("model_name", "kling-v1")
        modes, durations, alone = TAIL.get(model, (set(), set(), False))
        if body.get("mode", "std") not in modes or body.get("duration", "5") not in durations:
            return f"image_tail is not supported by {model} in mode {body.get('mode', 'std')} for that duration"
        if image is None and not alone:
            return f"image is required with image_tail for {model}"
        if body.get("camera_control") is not None:
            return "image_tail cannot be combined with camera_control"
        if model == "kling-v2-6" and body.get("sound") == "on":
            return "image_tail is not supported with sound on"
        return None

    def _multi_image(self, body: dict[str, Any]) -> str | None:
        """Why multi-image2video refuses this body, or None."""
        unknown = sorted(set(body) - MULTI_FIELDS)
        if unknown:
            return f"{unknown[0]} is not a parameter of multi-image2video"
        if body.get("model_name", "kling-v1-6") != "kling-v1-6":
            return f"model_name is invalid: {body.get('model_name')!r}"
        images = body.get("image_list")
        if not isinstance(images, list) or not 1 <= len(images) <= 4:
            return "image_list must hold 1 to 4 images"
        for item in images:
            if not isinstance(item, dict) or set(item) != {"image"} or not self._image_ok(item["image"]):
                return "image_list items must be {image: URL or raw base64 without data: prefix}"
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "prompt is required"
        return None
