"""Fake of ModelsLab's v6 video API (reference/provider-apis.md §8): POST /api/v6/video/text2video,
POST /api/v6/video/img2video, POST /api/v6/video/fetch/{id}; the key in the JSON body; answers
{status: success | processing | error, id, output[], eta, future_links, fetch_result, message, track_id},
errors mostly as status "error" with HTTP 200."""

from __future__ import annotations

from typing import Any

from .base import FakeServer, Request, Response

T2V = {"cogvideox", "wanx", "ltx"}
I2V = {"svd", "wan2.2", "ltx-2.3"}


class FakeModelsLab(FakeServer):
    provider = "modelslab"

    def __init__(self, video: bytes, key: str = "mlab-test-key-0123456789abcdef") -> None:
        self._next_id = 9_000_000
        super().__init__(video, key)

    def setup_routes(self) -> None:
        self.route("POST", r"/api/v6/video/text2video", lambda r: self.create(r, T2V), kind="submit")
        self.route("POST", r"/api/v6/video/img2video", lambda r: self.create(r, I2V), kind="submit")
        self.route("POST", r"/api/v6/video/fetch/(?P<id>\d+)", self.fetch, kind="poll")

    def auth_error(self, req: Request) -> Response | None:
        try:
            key = req.json().get("key")
        except ValueError:
            key = None
        if key == self.key:
            return None
        return Response(200, {"status": "error", "message": "Invalid Api Key", "tip": "Get your key at modelslab.com"})

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        if status == 429:
            return {"status": "error", "message": "Rate limit exceeded, please slow down"}
        return {"status": "error", "message": message}

    def _error(self, message: str) -> Response:
        return Response(200, {"status": "error", "message": message})

    def create(self, req: Request, models: set[str]) -> Response:
        body = req.json()
        if body.get("model_id") not in models:
            return self._error(f"Invalid model_id {body.get('model_id')!r}")
        if int(body.get("width", 512)) > 512 or int(body.get("height", 512)) > 512:
            return self._error("width and height must be at most 512")
        if int(body.get("num_frames", 16)) > 25:
            return self._error("num_frames must be at most 25")
        if int(body.get("fps", 8)) > 16:
            return self._error("fps must be at most 16")
        if int(body.get("num_inference_steps", 20)) > 50:
            return self._error("num_inference_steps must be at most 50")
        if not 0 <= float(body.get("guidance_scale", 7)) <= 8:
            return self._error("guidance_scale must be between 0 and 8")
        if models is I2V and not str(body.get("init_image", "")).startswith("http"):
            return self._error("init_image must be a URL")
        with self.lock:
            self._next_id += 1
            task_id = str(self._next_id)
        task = self.new_task(body, task_id=task_id)
        task.extra.update(image=body.get("init_image"), track_id=body.get("track_id"))
        self.schedule_webhook(task, body.get("webhook"))
        return Response(200, self._answer(task, "processing"))

    def webhook_payload(self, task: Any) -> Any:
        return self._answer(task, "success" if self.phase(task) == "succeed" else "error")  # with track_id

    def _answer(self, task: Any, status: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": status,
            "id": int(task.id),
            "track_id": task.extra.get("track_id"),
            "fetch_result": f"{self.url}/api/v6/video/fetch/{task.id}",
            "output": [],
            "proxy_links": [],
            "future_links": [],
            "meta": {k: v for k, v in task.input.items() if k != "key"},
        }
        if status == "processing":
            out.update(eta=12, tip="Your request is processing", message="Try to fetch request after given eta")
        elif status == "success":
            url = self.output_url()
            out.update(output=[url], proxy_links=[url], generationTime=11.8)
        return out

    def fetch(self, req: Request) -> Response:
        task = self.tasks.get(req.match.group("id")) if req.match else None
        if task is None:
            return self._error("Request not found")
        phase = self.advance(task)
        if phase in ("queued", "running"):
            return Response(200, self._answer(task, "processing"))
        if phase == "succeed":
            return Response(200, self._answer(task, "success"))
        out = self._answer(task, "error")
        out["message"] = (
            "NSFW content detected in the generated video; the request was blocked"
            if phase == "moderate"
            else "Failed to generate the video: the GPU worker crashed"
        )
        return Response(200, out)
