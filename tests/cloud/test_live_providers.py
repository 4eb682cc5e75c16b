"""The provider side of the "Live providers" issue: each defect found against the providers' SDKs and docs
(shared/reference/reviews-2026-12.md, "Providers"), driven through the real generate path against the fakes, which
refuse what the real services refuse."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema import engine
from kinema.backends.base import CancelToken
from kinema.errors import (
    BackendUnavailable,
    Cancelled,
    ContentRejected,
    InvalidRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)

from .cases import CASES, FAST, Case
from .test_providers import PROMPT, _i2v_request, _request

CASE = {c.backend: c for c in CASES}
#: providers with a cancel call (Runway DELETE /v1/tasks/{id}, Luma DELETE /generations/{id}, fal PUT .../cancel,
#: Replicate POST /v1/predictions/{id}/cancel)
CANCELLABLE = {"runway", "luma", "fal", "replicate"}


@pytest.fixture
def start(video_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """start(backend) -> (case, fake): one provider's fake, running, with the SDK pointed at it."""
    fakes: list[Any] = []

    def _start(backend: str) -> tuple[Case, Any]:
        case = CASE[backend]
        fake = case.fake(video_bytes)
        fakes.append(fake)
        for var, value in case.env(fake, tmp_path).items():
            monkeypatch.setenv(var, value)
        return case, fake

    yield _start
    for fake in fakes:
        fake.close()


def _listed(name: str) -> Any:
    return {b.name: b for b in kinema.list_backends()}[name]


# -- 1. the /v1/videos backend needs a server of its own -----------------------------------------------------------


def test_openai_videos_without_a_base_url_is_unusable_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-only-a-key-0123456789")
    listed = _listed("openai")
    assert not listed.usable
    assert "KINEMA_OPENAI_VIDEOS_BASE_URL" in (listed.reason or "") and "retired" in (listed.reason or "")
    with pytest.raises(BackendUnavailable) as info:
        engine.run(
            kinema.VideoRequest(prompt=PROMPT, backend="openai", model="sora-2", duration=4, width=1280, height=720)
        )
    assert "KINEMA_OPENAI_VIDEOS_BASE_URL" in info.value.message


def test_kinema_backends_says_the_videos_server_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kinema.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", "sk-only-a-key-0123456789")
    result = CliRunner().invoke(app, ["backends", "--json"])
    listed = {b["name"]: b for b in json.loads(result.stdout)}
    assert listed["openai"]["usable"] is False
    assert "KINEMA_OPENAI_VIDEOS_BASE_URL" in listed["openai"]["reason"]


def test_openai_videos_refuses_openais_own_host(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    case, fake = start("openai")
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", "https://api.openai.com/v1")
    listed = _listed("openai")
    assert not listed.usable and "Sora" in (listed.reason or "") and "2026-09-24" in (listed.reason or "")
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", fake.url + "/v1")
    with pytest.raises(InvalidRequest) as info:
        engine.run(_request(case, options={"base_url": "https://api.openai.com/v1/"}))
    assert info.value.field == "options.base_url" and "Sora" in info.value.message
    assert fake.submit_attempts == 0


def test_openai_videos_takes_the_server_from_options(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, fake = start("openai")
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    result = engine.run(_request(case, options={"base_url": fake.url + "/v1"}), output=tmp_path / "x.mp4")
    assert result.path is not None and fake.submissions == 1


# -- 2. Runway: a local photo goes as a data URI of at most 5 MB ------------------------------------------------


def test_runway_large_local_photo_is_shrunk_under_the_data_uri_limit(start: Any, tmp_path: Path) -> None:
    case, fake = start("runway")
    from PIL import Image

    from fakes.runway import DATA_URI_LIMIT

    rng = np.random.default_rng(0)
    h, w = 2400, 3200  # a phone photo: a gradient with sensor noise, far over 5 MB as PNG
    base = (
        np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
        + np.linspace(0, 50, h, dtype=np.float32)[:, None, None]
    )
    pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels).save(photo)
    assert photo.stat().st_size * 4 / 3 > DATA_URI_LIMIT
    request = kinema.VideoRequest(
        prompt=PROMPT,
        backend="runway",
        model="gen4_turbo",
        duration=5,
        width=1280,
        height=720,
        image=str(photo),
        options=FAST,
    )
    result = engine.run(request, output=tmp_path / "i2v.mp4")
    assert result.path is not None and fake.submissions == 1
    (task,) = fake.tasks.values()
    sent = task.extra["image"]
    assert sent.startswith("data:image/jpeg;base64,") and len(sent) <= DATA_URI_LIMIT
    import base64

    decoded = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1])))
    assert decoded.size[0] / decoded.size[1] == pytest.approx(w / h, rel=0.01)  # shrunk, not cropped


def test_runway_fake_refuses_an_oversized_data_uri(start: Any) -> None:
    case, fake = start("runway")
    import runwayml

    client = runwayml.RunwayML(api_key=fake.key, base_url=fake.url, max_retries=0)
    with pytest.raises(runwayml.BadRequestError) as info:
        client.image_to_video.create(
            model="gen4_turbo", ratio="1280:720", duration=5, prompt_image="data:image/png;base64," + "A" * 5_000_001
        )
    assert "5MB" in str(info.value)
    assert fake.submissions == 0


# -- 3. Kling: HTTP 429 with an account code is an account problem, not a rate limit ---------------------------


@pytest.mark.parametrize("code", [1100, 1101, 1102, 1304])
def test_kling_account_errors_fail_at_once(start: Any, tmp_path: Path, code: int) -> None:
    case, fake = start("kling")
    fake.account_error(code)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    assert not isinstance(info.value, RateLimited), "an account problem is not a rate limit"
    assert info.value.provider_code == str(code) and info.value.status_code == 429
    assert "retrying will not help" in info.value.message
    assert fake.submit_attempts == 1 and fake.submissions == 0, "not retried"
    assert time.monotonic() - t0 < 2


# -- 4. Replicate: a community model without a version runs its latest version --------------------------------


def test_replicate_community_model_runs_its_latest_version(start: Any, tmp_path: Path) -> None:
    case, fake = start("replicate")
    from fakes.replicate import MODELS

    result = engine.run(
        _request(case, model="someone/custom-video", width=1280, height=720, duration=5), output=tmp_path / "x.mp4"
    )
    assert result.path is not None and fake.submissions == 1
    paths = [(r.method, r.path) for r in fake.log]
    assert ("GET", "/v1/models/someone/custom-video") in paths
    assert ("POST", "/v1/predictions") in paths
    assert ("POST", "/v1/models/someone/custom-video/predictions") not in paths
    (task,) = fake.tasks.values()
    assert task.extra["version"] == MODELS["someone/custom-video"]


def test_replicate_official_model_keeps_the_official_route(start: Any, tmp_path: Path) -> None:
    case, fake = start("replicate")
    engine.run(_request(case), output=tmp_path / "x.mp4")
    paths = [(r.method, r.path) for r in fake.log]
    assert ("POST", "/v1/models/minimax/video-01/predictions") in paths
    assert not any(p.startswith("/v1/models/") and m == "GET" for m, p in paths), "no lookup for a known model"


# -- 5. Runway: retired models ------------------------------------------------------------------------------------


def test_runway_retired_models_are_refused(start: Any, tmp_path: Path) -> None:
    case, fake = start("runway")
    assert "gen3a_turbo" not in kinema.get_backend("runway").models()
    image = tmp_path / "first.png"
    from fakes.base import tiny_png

    image.write_bytes(tiny_png())
    with pytest.raises(InvalidRequest) as info:
        engine.run(
            kinema.VideoRequest(
                prompt=PROMPT,
                backend="runway",
                model="gen3a_turbo",
                image=str(image),
                width=1280,
                height=768,
                duration=5,
                options=FAST,
            )
        )
    assert info.value.field == "model" and "gen4_turbo" in info.value.message
    assert fake.submit_attempts == 0
    import runwayml  # the fake refuses it too, as Runway does

    client = runwayml.RunwayML(api_key=fake.key, base_url=fake.url, max_retries=0)
    with pytest.raises(runwayml.BadRequestError):
        client.image_to_video.create(
            model="gen3a_turbo",
            ratio="1280:768",
            duration=5,  # type: ignore[arg-type]
            prompt_image="https://example.com/a.png",
        )


# -- 6. refusals that are not refusals ------------------------------------------------------------------------


def test_luma_failed_to_moderate_image_is_an_image_fetch_failure(start: Any, tmp_path: Path) -> None:
    case, fake = start("luma")
    fake.outcome = "image_fetch"
    with pytest.raises(ProviderError) as info:
        engine.run(_i2v_request(case, fake, tmp_path), output=tmp_path / "x.mp4")
    assert not isinstance(info.value, ContentRejected)
    assert info.value.provider_code == "image_fetch"
    assert "download the input image" in info.value.message and "rephrase" not in info.value.message


def test_veo_not_charged_filter_result_is_not_a_refusal(start: Any, tmp_path: Path) -> None:
    case, fake = start("veo")
    fake.outcome = "not_charged"
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    assert not isinstance(info.value, ContentRejected)
    assert info.value.provider_code == "RAI_NOT_CHARGED"
    assert "not been charged" in info.value.message and "again" in info.value.message
    assert fake.submissions == 1


# -- 7. Pictory "cleaned"; Veo on Google Cloud metadata credentials ------------------------------------------


def test_pictory_cleaned_is_terminal(start: Any, tmp_path: Path) -> None:
    case, fake = start("pictory")
    fake.outcome = "cleaned"
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case, options={"timeout": 10}), output=tmp_path / "x.mp4")
    assert not isinstance(info.value, ProviderTimeout), "not polled until the deadline"
    assert info.value.provider_code == "cleaned" and time.monotonic() - t0 < 5


@pytest.mark.parametrize("var", ["K_SERVICE", "GCE_METADATA_HOST"])
def test_veo_is_usable_on_google_cloud_without_a_credentials_file(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    listed = _listed("veo")
    assert not listed.usable and "GOOGLE_APPLICATION_CREDENTIALS" in (listed.reason or "")
    monkeypatch.setenv(var, "kinema-svc" if var == "K_SERVICE" else "169.254.169.254")
    assert _listed("veo").usable, "metadata-server credentials are application default credentials"


def test_veo_runs_on_metadata_server_credentials(start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.compute_engine import _metadata

    case, fake = start("veo")
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):  # no file, no project: all from metadata
        monkeypatch.delenv(var)
    host = f"127.0.0.1:{fake.port}"
    monkeypatch.setenv("GCE_METADATA_IP", host)  # google-auth's ping
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)  # read by google-auth when imported
    assert _listed("veo").usable
    result = engine.run(_request(case), output=tmp_path / "x.mp4")
    assert result.path is not None and fake.submissions == 1
    assert any(r.path.endswith("/service-accounts/default/token") for r in fake.log)
    assert any(f"/projects/{fake.project}/" in r.path for r in fake.log if r.method == "POST")


# -- 8. a lost submit answer never pays twice ---------------------------------------------------------------


def test_lost_submit_answer_is_found_or_reported(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.drop_submit_answers = 1  # the task is created (and billed); its answer never arrives
    if case.backend == "kling":  # external_task_id: the task is looked up by it
        result = engine.run(_request(case), output=tmp_path / "x.mp4")
        (task,) = fake.tasks.values()
        assert result.provider_task_id == task.id and result.path is not None
        assert task.input["external_task_id"].startswith("kinema-")
    else:
        with pytest.raises(ProviderError) as info:
            engine.run(_request(case), output=tmp_path / "x.mp4")
        assert info.value.provider_code == "submit_unconfirmed", info.value.message
        assert "may exist" in info.value.message and "not sent again" in info.value.message
    assert fake.submissions == 1 and fake.submit_attempts == 1, "never submitted twice"


@pytest.mark.parametrize(
    ("backend", "var"),
    [("runway", "RUNWAYML_BASE_URL"), ("pictory", "KINEMA_PICTORY_BASE_URL"), ("replicate", "REPLICATE_BASE_URL")],
)
def test_a_submit_that_never_connected_is_a_plain_error(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, var: str
) -> None:
    import socket

    case, fake = start(backend)
    with socket.socket() as sock:  # a port nobody listens on: the connection is refused, nothing is sent
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(var, f"http://127.0.0.1:{port}" + ("/pictoryapis" if backend == "pictory" else ""))
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    assert info.value.provider_code == "connect" and "may exist" not in info.value.message


@pytest.mark.parametrize("backend", ["kling", "modelslab"])  # the providers that take a client token
def test_client_token_comes_from_the_caller(start: Any, tmp_path: Path, backend: str) -> None:
    case, fake = start(backend)
    seen: list[dict[str, Any]] = []
    engine.run(
        _request(case),
        output=tmp_path / "x.mp4",
        resume_info={"client_token": "job-42"},
        on_task_id=lambda tid, info: seen.append(info),
    )
    (task,) = fake.tasks.values()
    sent = task.input.get("external_task_id") or task.input.get("track_id")
    assert sent == "job-42" and seen[0]["client_token"] == "job-42"


def test_a_retried_job_finds_its_task_by_the_client_token(start: Any, tmp_path: Path) -> None:
    case, fake = start("kling")

    def crash(task_id: str, info: dict[str, Any]) -> None:  # the worker died before storing the task id
        raise RuntimeError("killed")

    with pytest.raises(kinema.KinemaError):
        engine.run(_request(case), output=tmp_path / "x.mp4", resume_info={"client_token": "job-7"}, on_task_id=crash)
    result = engine.run(_request(case), output=tmp_path / "x.mp4", resume_info={"client_token": "job-7"})
    assert result.path is not None and fake.submissions == 1 and fake.submit_attempts == 1
    assert result.provider_task_id == next(iter(fake.tasks))


# -- 10. cancel stops the bill --------------------------------------------------------------------------------


def test_cancel_calls_the_providers_cancel_once(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.polls_to_finish = 1000
    token = CancelToken()
    ids: list[str] = []

    def cancel_now(task_id: str, info: dict[str, Any]) -> None:  # Ctrl-C right after the submit
        ids.append(task_id)
        token.cancel()

    with pytest.raises(Cancelled) as raised:
        engine.run(_request(case), output=tmp_path / "x.mp4", cancel=token, on_task_id=cancel_now)
    err = raised.value
    assert err.task_id == ids[0]  # type: ignore[attr-defined]
    record = err.provider_cancel  # type: ignore[attr-defined]
    if case.backend in CANCELLABLE:
        assert fake.cancels == 1, "exactly one cancel call"
        assert record["called"] is True and record["answer"]
        assert "cancel sent" in err.message
    else:
        assert fake.cancels == 0 and record["called"] is False
        assert "no cancel" in err.message and "billed" in err.message
    assert fake.submissions == 1


def test_replicate_cancel_after_sets_the_providers_deadline(start: Any, tmp_path: Path) -> None:
    case, fake = start("replicate")
    engine.run(_request(case, options={"cancel_after": 1800}), output=tmp_path / "x.mp4")
    (task,) = fake.tasks.values()
    assert task.extra["cancel_after"] == "1800s"
    with pytest.raises(InvalidRequest):
        engine.run(_request(case, options={"cancel_after": "soon"}))


def test_a_cancel_that_keeps_the_task_calls_no_provider_cancel(start: Any, tmp_path: Path) -> None:
    """A worker shutting down or losing its lease stops its own wait, not the paid task another worker resumes."""
    case, fake = start("runway")
    fake.polls_to_finish = 1000
    token = CancelToken()
    with pytest.raises(Cancelled) as raised:
        engine.run(
            _request(case),
            output=tmp_path / "x.mp4",
            cancel=token,
            on_task_id=lambda task_id, info: token.cancel(keep_provider_task=True),
        )
    assert raised.value.provider_cancel is not None
    assert fake.cancels == 0 and raised.value.provider_cancel["called"] is False


# -- 11. what each generation cost --------------------------------------------------------------------------------

#: provider -> the key its own cost figure has in Result.cost (None: it reports none), and whether USD is known
COSTS: dict[str, tuple[str | None, bool]] = {
    "runway": ("credits", True),
    "kling": ("units", True),
    "pictory": ("ai_credits", False),
    "fal": ("inference_time", False),
    "replicate": ("predict_time", False),
    "modelslab": ("generation_time", False),
    "luma": (None, True),
    "veo": (None, True),
    "openai": (None, False),
}


def test_cost_reports_what_the_provider_said_and_an_estimate(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    result = engine.run(_request(case), output=tmp_path / "x.mp4")
    key, usd = COSTS[case.backend]
    cost = result.cost or {}
    if key is not None:
        assert isinstance(cost.get(key), int | float), cost
    if usd:
        assert cost["usd"] > 0 and cost["estimate"] is True
        assert cost["price_date"] and cost["price_source"]
    else:
        assert "usd" not in cost
    assert json.dumps(result.recipe["cost"]) == json.dumps(result.cost)
