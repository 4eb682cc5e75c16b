"""Fake of fal.ai's queue (reference/provider-apis.md §6): POST /{owner}/{alias}/{subpath} returns
{request_id, response_url, status_url, cancel_url}; GET .../requests/{id}/status (IN_QUEUE with queue_position,
IN_PROGRESS, COMPLETED, the last possibly with error / error_type); GET .../requests/{id} is the model output
{video: {url, ...}}; PUT .../requests/{id}/cancel. Status and result URLs drop the subpath. Auth "Key <FAL_KEY>"
(Bearer accepted too); errors {detail}, 422 with a pydantic-style detail list. Kling 2.5 Turbo Pro's
image-to-video takes ``tail_image_url`` (an http(s) or data URI) with its required ``image_url`` (fal's model page);
the fake records it as ``task.extra["tail"]``.

Wan 2.2's ``fal-ai/wan/v2.2-a14b/video-to-video`` (edits) needs ``video_url`` (an http(s) URL or a video data URI)
and takes ``strength`` 0..1, ``num_frames`` 17..161, ``frames_per_second`` 4..60, ``resolution`` 480p/580p/720p,
``aspect_ratio`` auto/16:9/9:16/1:1 and ``num_interpolated_frames`` 0..4; Kling 1.6's
``fal-ai/kling-video/v1.6/standard/elements`` needs ``input_image_urls``, 1 to 4 images (fal's model pages,
llms.txt input schemas). Anything else is refused with 422, as fal's validation does."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from .base import FakeServer, Request, Response

KLING = {
    "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
    "fal-ai/kling-video/v2.1/master/text-to-video",
    "fal-ai/kling-video/v2.1/master/image-to-video",
    "fal-ai/kling-video/v2.1/standard/image-to-video",
    "fal-ai/kling-video/v2/master/text-to-video",
}
#: image-to-video endpoints whose input schema lists tail_image_url (fal.ai model pages, llms.txt)
TAIL = {"fal-ai/kling-video/v2.5-turbo/pro/image-to-video"}
PIKA = {"fal-ai/pika/v2.2/text-to-video", "fal-ai/pika/v2.2/image-to-video", "fal-ai/pika/v2.5/text-to-video"}
WAN_V2V = "fal-ai/wan/v2.2-a14b/video-to-video"
ELEMENTS = "fal-ai/kling-video/v1.6/standard/elements"


class FakeFal(FakeServer):
    provider = "fal"

    def __init__(self, video: bytes, key: str = "fal-key-id-0123:fal-secret-abcdef0123456789") -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        # fal signs webhooks with ED25519; its public keys are a JWKS (rest.fal.ai/.well-known/jwks.json)
        self.signing_key = Ed25519PrivateKey.generate()
        self.user_id = "fal-user-0123"
        super().__init__(video, key)

    @property
    def jwks(self) -> dict[str, Any]:
        """The public half of the signing key, as fal publishes it."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-1", "use": "sig"}]}

    def webhook_payload(self, task: Any) -> Any:
        ok = self.phase(task) == "succeed"
        payload = {"video": {"url": self.output_url(), "content_type": "video/mp4"}} if ok else None
        return {
            "request_id": task.id,
            "gateway_request_id": task.id,
            "status": "OK" if ok else "ERROR",
            "payload": payload,
            "error": None if ok else "Internal error while running the model",
        }

    def webhook_headers(self, payload: bytes) -> dict[str, str]:
        import json

        request_id = str(json.loads(payload).get("request_id", ""))
        ts = str(int(time.time()))
        message = "\n".join((request_id, self.user_id, ts, hashlib.sha256(payload).hexdigest())).encode()
        signature = self.signing_key.sign(message).hex()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": ts,
            "X-Fal-Webhook-Signature": signature,
        }

    def setup_routes(self) -> None:
        self.route(
            "GET",
            r"/(?P<owner>[\w.-]+)/(?P<alias>[\w.-]+)/requests/(?P<id>[0-9a-f-]+)/status",
            self.status,
            kind="poll",
        )
        self.route(
            "GET", r"/(?P<owner>[\w.-]+)/(?P<alias>[\w.-]+)/requests/(?P<id>[0-9a-f-]+)", self.result, kind="result"
        )
        self.route(
            "PUT",
            r"/(?P<owner>[\w.-]+)/(?P<alias>[\w.-]+)/requests/(?P<id>[0-9a-f-]+)/cancel",
            self.cancel,
            kind="cancel",
        )
        self.route("POST", r"/(?P<endpoint>[\w.-]+/[\w.-]+(?:/[\w.-]+)*)", self.submit, kind="submit")

    def auth_error(self, req: Request) -> Response | None:
        if req.header("authorization") in (f"Key {self.key}", f"Bearer {self.key}"):
            return None
        return Response(401, {"detail": "Authentication is required to access this application."})

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        return {"detail": message}

    def _invalid(self, loc: str, msg: str, value: Any) -> Response:
        return Response(422, {"detail": [{"loc": ["body", loc], "msg": msg, "type": "value_error", "input": value}]})

    def submit(self, req: Request) -> Response:
        endpoint = req.match.group("endpoint") if req.match else ""
        if endpoint not in KLING | PIKA | {WAN_V2V, ELEMENTS}:
            return Response(404, {"detail": f"Application '{endpoint}' not found"})
        body = req.json()
        if not body.get("prompt"):
            return self._invalid("prompt", "field required", None)
        checks = {WAN_V2V: _wan_problem, ELEMENTS: _elements_problem}
        refused = checks[endpoint](body) if endpoint in checks else None
        if refused is not None:
            return self._invalid(*refused)
        if endpoint in KLING or endpoint == ELEMENTS:
            if body.get("duration", "5") not in ("5", "10"):
                return self._invalid("duration", "unexpected value; permitted: '5', '10'", body.get("duration"))
            if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
                return self._invalid("aspect_ratio", "unexpected value", body.get("aspect_ratio"))
        elif endpoint in PIKA:
            if body.get("duration", 5) not in (5, 10):
                return self._invalid("duration", "unexpected value; permitted: 5, 10", body.get("duration"))
            if body.get("resolution", "720p") not in ("480p", "720p", "1080p"):
                return self._invalid("resolution", "unexpected value", body.get("resolution"))
        if endpoint.endswith("image-to-video") and not body.get("image_url"):
            return self._invalid("image_url", "field required", None)
        tail = body.get("tail_image_url")
        if endpoint in TAIL and tail is not None and not str(tail).startswith(("http://", "https://", "data:image/")):
            return self._invalid("tail_image_url", "must be a URL or an image data URI", tail)
        owner, alias = endpoint.split("/")[:2]
        task = self.new_task(body, task_id=str(uuid.uuid4()))
        task.extra.update(
            app=f"{owner}/{alias}",
            endpoint=endpoint,
            image=body.get("image_url"),
            tail=body.get("tail_image_url") if endpoint in TAIL else None,
            video=body.get("video_url"),
            references=body.get("input_image_urls"),
        )
        self.schedule_webhook(task, next(iter(req.query.get("fal_webhook") or []), None))
        base = f"{self.url}/{owner}/{alias}/requests/{task.id}"  # the subpath is dropped
        return Response(
            200,
            {
                "request_id": task.id,
                "gateway_request_id": task.id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": 0,
            },
            headers={"x-fal-request-id": task.id},
        )

    def _task(self, req: Request) -> Any:
        if not req.match:
            return None
        task = self.tasks.get(req.match.group("id"))
        if task is None or task.extra["app"] != f"{req.match.group('owner')}/{req.match.group('alias')}":
            return None
        return task

    def status(self, req: Request) -> Response:
        task = self._task(req)
        if task is None:
            return Response(404, {"detail": "Request not found"})
        phase = self.advance(task)
        base = f"{self.url}/{task.extra['app']}/requests/{task.id}"
        if phase == "queued":
            return Response(200, {"status": "IN_QUEUE", "queue_position": 2, "response_url": base})
        if phase == "running":
            return Response(200, {"status": "IN_PROGRESS", "response_url": base})  # no "logs" key: it is optional
        out: dict[str, Any] = {"status": "COMPLETED", "response_url": base, "metrics": {"inference_time": 41.5}}
        if phase == "fail":
            out.update(error="Internal error while running the model", error_type="internal_server_error")
        elif phase == "moderate":
            out.update(
                error="The content could not be processed because it was flagged by a content checker",
                error_type="content_policy_violation",
            )
        return Response(200, out)

    def result(self, req: Request) -> Response:
        task = self._task(req)
        if task is None:
            return Response(404, {"detail": "Request not found"})
        if self.phase(task) != "succeed":
            return Response(400, {"detail": "Request is still in progress"})
        return Response(
            200,
            {
                "video": {
                    "url": self.output_url(),
                    "content_type": "video/mp4",
                    "file_name": "output.mp4",
                    "file_size": len(self.video),
                }
            },
        )

    def cancel(self, req: Request) -> Response:
        task = self._task(req)
        if task is None:
            return Response(404, {"detail": "Request not found"})
        if task.polls > 1:
            return Response(400, {"detail": "Request already started", "status": "ALREADY_COMPLETED"})
        task.extra["cancelled"] = True
        return Response(202, {"status": "CANCELLATION_REQUESTED"})


def _is_file(value: Any, kind: str) -> bool:
    """A file input as fal takes it: an http(s) URL, or a data URI of the right kind (image / video)."""
    return isinstance(value, str) and value.startswith(("http://", "https://", f"data:{kind}/"))


def _wan_problem(body: dict[str, Any]) -> tuple[str, str, Any] | None:
    """Why Wan 2.2's video-to-video refuses a body (its input schema), or None."""
    ranges = {
        "strength": (0, 1),
        "num_frames": (17, 161),
        "frames_per_second": (4, 60),
        "num_interpolated_frames": (0, 4),
    }
    if not _is_file(body.get("video_url"), "video"):
        return "video_url", "field required: a URL or a video data URI", body.get("video_url")
    for name, (low, high) in ranges.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            return name, f"must be between {low} and {high}", value
        if name != "strength" and not isinstance(value, int):
            return name, "must be an integer", value
    if body.get("resolution", "720p") not in ("480p", "580p", "720p"):
        return "resolution", "unexpected value; permitted: '480p', '580p', '720p'", body.get("resolution")
    if body.get("aspect_ratio", "auto") not in ("auto", "16:9", "9:16", "1:1"):
        return "aspect_ratio", "unexpected value", body.get("aspect_ratio")
    return None


def _elements_problem(body: dict[str, Any]) -> tuple[str, str, Any] | None:
    """Why Kling 1.6's elements endpoint refuses a body: input_image_urls is required, up to 4 images."""
    images = body.get("input_image_urls")
    if not isinstance(images, list) or not 1 <= len(images) <= 4:
        return "input_image_urls", "field required: a list of 1 to 4 image URLs", images
    bad = next((u for u in images if not _is_file(u, "image")), None)
    if bad is not None:
        return "input_image_urls", "each item must be a URL or an image data URI", bad
    return None
