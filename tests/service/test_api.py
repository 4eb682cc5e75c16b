"""The core HTTP API: create, retrieve, list, content (with ranges), cancel, delete, models, health, errors."""

from __future__ import annotations

import json

from conftest import FAST, wait_status
from fastapi.testclient import TestClient


def test_create_run_download_delete(client: TestClient) -> None:
    r = client.post("/v1/videos", json={"prompt": "a red ball bouncing on green grass", **FAST})
    assert r.status_code == 200, r.text
    video = r.json()
    assert video["object"] == "video" and video["status"] == "queued" and video["progress"] == 0
    assert video["size"] == "128x128" and video["backend"] == "builtin"
    done = wait_status(client, video["id"])
    assert done["status"] == "completed", done
    assert done["progress"] == 100 and done["completed_at"] >= done["created_at"]
    assert done["expires_at"] > done["completed_at"]
    assert done["recipe"]["prompt"] == "a red ball bouncing on green grass" and done["seed"] == 1
    content = client.get(f"/v1/videos/{video['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    assert content.content[4:8] == b"ftyp"
    part = client.get(f"/v1/videos/{video['id']}/content", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == content.content[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(content.content)}"
    thumb = client.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
    assert thumb.status_code == 200 and thumb.content[:8] == b"\x89PNG\r\n\x1a\n"
    d = client.delete(f"/v1/videos/{video['id']}")
    assert d.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    assert client.get(f"/v1/videos/{video['id']}").status_code == 404
    assert client.get(f"/v1/videos/{video['id']}/content").status_code == 404


def test_events_stream_progress_until_completed(tmp_path, monkeypatch) -> None:
    from conftest import make_config

    from kinema.service.app import create_app
    from kinema.service.store import Store

    # the slow test backend takes a known 1.2 s, so the stream sees several progress steps on any machine
    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path)
    key = Store(cfg.db_path).create_key("a")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        vid = client.post("/v1/videos", json={"prompt": "p", "backend": "slow", "steps": 12}).json()["id"]
        events = []
        with client.stream("GET", f"/v1/videos/{vid}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "video.completed" and set(kinds[:-1]) <= {"video.progress"}
    progress = [d["progress"] for _, d in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len([p for p in progress if 0 < p < 100]) >= 2, progress
    # each event carries the step, the total and the ETA while running, and drops them once finished
    running = [d for k, d in events if d["status"] == "in_progress" and d["stage"] == "denoising"]
    assert len(running) >= 2 and all(d["total_steps"] == 12 and 1 <= d["step"] <= 12 for d in running), running
    steps = [d["step"] for d in running]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(d["eta_seconds"] is not None and 0 <= d["eta_seconds"] < 5 for d in running[1:]), running
    assert events[-1][1]["step"] is None and events[-1][1]["eta_seconds"] is None


def test_storyboard_events_carry_scene_and_step(tmp_path, monkeypatch) -> None:
    from conftest import make_config

    from kinema.service.app import create_app
    from kinema.service.store import Store

    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path)
    key = Store(cfg.db_path).create_key("a")[1]
    body = {
        "title": "two",
        "backend": "slow",
        "steps": 8,
        "fps": 4,
        "scenes": [{"prompt": "one", "duration": 1}, {"prompt": "two", "duration": 1}],
    }
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/v1/storyboards", json=body)
        assert r.status_code == 200, r.text
        seen = []
        with client.stream("GET", f"/v1/videos/{r.json()['id']}/events") as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
    assert seen[-1]["status"] == "completed", seen[-1]
    denoising = [d for d in seen if (d["stage"] or "").endswith(": denoising")]
    steps = [(d["scene"], d["step"]) for d in denoising]
    assert {k for k, _ in steps} == {1, 2} and steps == sorted(steps), steps
    assert all(d["scenes"] == 2 and d["total_steps"] == 8 for d in denoising)
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress)
    # scene 1's steps move the bar inside the first half
    assert any(0 < d["progress"] < 48 for d in denoising if d["scene"] == 1)


def test_cancel_queued_and_running_jobs(tmp_path, monkeypatch) -> None:
    from conftest import make_config

    from kinema.service.app import create_app
    from kinema.service.store import Store

    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path)
    key = Store(cfg.db_path).create_key("a")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        running = client.post("/v1/videos", json={"prompt": "p", "backend": "slow", "steps": 500}).json()["id"]
        queued = client.post("/v1/videos", json={"prompt": "p", "backend": "slow", "steps": 2}).json()["id"]
        wait_status(client, running, ("in_progress",), timeout=30)
        assert client.post(f"/v1/videos/{queued}/cancel").json()["status"] == "cancelled"
        client.post(f"/v1/videos/{running}/cancel")
        final = wait_status(client, running, timeout=10)
        assert final["status"] == "cancelled" and final["error"]["code"] == "cancelled"
        assert client.get(f"/v1/videos/{running}/content").status_code == 409
        assert client.post(f"/v1/videos/{running}/cancel").status_code == 200  # cancelling again is harmless
        assert not any(cfg.outputs_dir.iterdir())


def test_list_pagination_and_order(tmp_path) -> None:
    from conftest import make_config

    from kinema.service.app import create_app
    from kinema.service.store import Store

    cfg = make_config(tmp_path, workers=0)
    key = Store(cfg.db_path).create_key("a")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        ids = [client.post("/v1/videos", json={"prompt": f"p{i}", **FAST}).json()["id"] for i in range(5)]
        page = client.get("/v1/videos", params={"limit": 2}).json()
        assert [v["id"] for v in page["data"]] == ids[::-1][:2] and page["has_more"]
        assert page["first_id"] == ids[4] and page["last_id"] == ids[3]
        rest = client.get("/v1/videos", params={"limit": 10, "after": page["last_id"]}).json()
        assert [v["id"] for v in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
        asc = client.get("/v1/videos", params={"order": "asc", "limit": 3}).json()
        assert [v["id"] for v in asc["data"]] == ids[:3]
        bad = client.get("/v1/videos", params={"after": "video_nope"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"
        assert client.get("/v1/videos", params={"limit": 0}).json()["error"]["param"] == "limit"


def test_models_list_capabilities(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    builtin = next(m for m in models["data"] if m["id"] == "builtin")
    caps = builtin["capabilities"]
    assert builtin["usable"] and builtin["default"]
    assert set(caps["modes"]) == {"t2v", "i2v", "extend", "edit", "keyframes"}
    assert caps["sizes"] == [[128, 128]] and "12k+4" in caps["frame_rule"] and "durations" in caps
    assert builtin["job_kinds"] == ["video"]


def test_static_dir_is_mounted_at_root(tmp_path) -> None:
    from conftest import make_config

    from kinema.service.app import create_app

    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<h1>kinema</h1>")
    with TestClient(create_app(make_config(tmp_path, workers=0), static_dir=web)) as client:
        assert client.get("/").text == "<h1>kinema</h1>"
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/v1/videos").status_code == 401  # the API still wins over the page
