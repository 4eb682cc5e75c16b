"""Every Done-when scenario of the cloud backends, against every provider's fake (see cases.py).

Each test drives the real generate path (kinema.engine.run -> the backend -> the official SDK -> the fake over
HTTP) and asserts on what the fake saw: above all that exactly one (paid) generation was submitted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import kinema
from kinema import engine
from kinema.errors import (
    BackendUnavailable,
    ContentRejected,
    GenerationFailed,
    InvalidRequest,
    ProviderError,
    ProviderTimeout,
)

from .cases import FAST, Case

PROMPT = "a red ball bouncing on green grass"


def _request(case: Case, **extra: Any) -> kinema.VideoRequest:
    fields: dict[str, Any] = {"prompt": PROMPT, "backend": case.backend, "seed": 7, **case.t2v}
    options = {**FAST, **fields.pop("options", {}), **extra.pop("options", {})}
    fields.update(extra)
    return kinema.VideoRequest(options=options, **fields)


def _i2v_request(case: Case, fake: Any, tmp_path: Path) -> kinema.VideoRequest:
    from fakes.base import tiny_png

    assert case.i2v is not None
    if case.i2v_by_url:
        image: Any = fake.image_url
    else:
        image = tmp_path / "first.png"
        image.write_bytes(tiny_png())
        image = str(image)
    fields = {**case.i2v}
    options = {**FAST, **fields.pop("options", {})}
    return kinema.VideoRequest(prompt=PROMPT, backend=case.backend, seed=7, image=image, options=options, **fields)


def test_text_to_video_downloads_and_records(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    seen: list[tuple[str, dict[str, Any]]] = []
    out = tmp_path / "clip.mp4"
    result = engine.run(_request(case), output=out, on_task_id=lambda tid, info: seen.append((tid, info)))
    assert fake.submissions == 1
    assert result.path == out and out.is_file()
    assert result.video.num_frames == 8 and result.video.width == 32
    assert result.video.frames[-1, 0, 0, 1] > result.video.frames[0, 0, 0, 1]  # real frames were decoded
    task_ids = {t.id for t in fake.tasks.values()}
    assert result.provider_task_id in task_ids or any(result.provider_task_id.endswith(t) for t in task_ids)
    assert seen and seen[0][0] == result.provider_task_id  # the hook ran with the same id
    assert seen[0][1]["backend"] == case.backend and seen[0][1]["request"]["prompt"] == PROMPT
    recipe = kinema.video.read_metadata(out)
    assert recipe["backend"] == case.backend and recipe["provider_task_id"] == result.provider_task_id
    assert recipe["prompt"] == PROMPT
    assert PROMPT in json.dumps([t.input for t in fake.tasks.values()], default=str)


def test_image_to_video(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    if case.i2v is None:
        pytest.skip(f"{case.backend} offers no image-to-video")
    result = engine.run(_i2v_request(case, fake, tmp_path), output=tmp_path / "i2v.mp4")
    assert fake.submissions == 1
    assert result.recipe["mode"] == "i2v"
    (task,) = fake.tasks.values()
    assert task.extra.get("image") or "image" in json.dumps(task.input, default=str).lower()


def test_failure_is_a_provider_error(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.outcome = "fail"
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    assert not isinstance(info.value, ContentRejected)
    assert info.value.provider_message, "the provider's own message is kept"
    assert info.value.provider_message in info.value.message
    assert fake.submissions == 1
    assert not (tmp_path / "x.mp4").exists()


def test_moderation_is_content_rejected(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.outcome = "moderate"
    with pytest.raises(ContentRejected) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    assert "content" in info.value.message.lower()
    assert fake.submissions == 1


def test_429_on_submit_is_waited_out(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.inject("submit", status=429, times=1, retry_after=0.5)
    result = engine.run(_request(case), output=tmp_path / "x.mp4")
    assert result.path is not None and result.path.is_file()
    assert fake.submissions == 1 and fake.submit_attempts == 2
    submits = [t for kind, t in fake.request_times if kind == "submit"]
    assert submits[1] - submits[0] >= 0.45, "Retry-After: 0.5 was honoured"


def test_429_5xx_and_slow_answers_while_polling_are_waited_out(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.inject("poll", status=429, times=1, retry_after=0.2)
    fake.inject("poll", status=503, times=2)
    fake.slow_next["poll"] = (0.3, 1)  # one answer slower than the request timeout: a timeout, retried
    result = engine.run(_request(case, options={"request_timeout": 0.15}), output=tmp_path / "x.mp4")
    assert result.path is not None and result.path.is_file()
    assert fake.submissions == 1


def test_throttled_is_waited_out(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    if not case.throttled:
        pytest.skip(f"{case.backend} has no throttled state")
    fake.throttled_polls = 3
    events: list[Any] = []
    result = engine.run(_request(case), output=tmp_path / "x.mp4", on_progress=events.append)
    assert result.path is not None and result.path.is_file()
    assert fake.submissions == 1
    assert any("THROTTLED" in (e.message or "") for e in events)


def test_download_fails_twice_then_succeeds_with_one_submission(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.download_failures = 2
    result = engine.run(_request(case), output=tmp_path / "x.mp4")
    assert result.path is not None and result.path.is_file()
    assert fake.submissions == 1
    assert fake.downloads == 3


def test_download_that_keeps_failing_keeps_the_task(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    if case.inline_result:
        pytest.skip(f"{case.backend} returns the video inside the task; a failing fetch is retried as a poll")
    fake.download_failures = 10
    with pytest.raises(ProviderError) as info:
        engine.run(_request(case, options={"download_retries": 2}), output=tmp_path / "x.mp4")
    assert info.value.provider_code == "download_failed"
    assert "resume" in info.value.message
    assert fake.submissions == 1
    # the paid result is still there: resuming downloads it without a second submission
    fake.download_failures = 0
    task_id = info.value.task_id  # type: ignore[attr-defined]
    result = engine.run(_request(case), output=tmp_path / "x.mp4", resume_task_id=task_id)
    assert result.path is not None and fake.submissions == 1


class _Crash(Exception):
    pass


def test_crash_after_submit_is_resumed_without_a_second_submission(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    recorded: dict[str, Any] = {}

    def crash(task_id: str, info: dict[str, Any]) -> None:
        recorded.update(task_id=task_id, info=json.loads(json.dumps(info)))  # what a resume file would hold
        raise _Crash("the process died right after submit")

    with pytest.raises((GenerationFailed, _Crash)):
        engine.run(_request(case), output=tmp_path / "x.mp4", on_task_id=crash)
    assert fake.submissions == 1 and recorded["task_id"]
    result = engine.run(
        _request(case), output=tmp_path / "x.mp4", resume_task_id=recorded["task_id"], resume_info=recorded["info"]
    )
    assert result.path is not None and result.path.is_file()
    assert result.provider_task_id == recorded["task_id"]
    assert fake.submissions == 1, "resuming must not pay for a second generation"


def test_expired_output_url_is_refreshed(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    if not case.expiring_urls:
        pytest.skip(f"{case.backend} serves its result without a signed URL")
    fake.expire_urls = 1
    result = engine.run(_request(case), output=tmp_path / "x.mp4")
    assert result.path is not None and result.path.is_file()
    assert fake.submissions == 1
    assert fake.downloads == 2  # the expired URL, then the fresh one
    assert sum(1 for v in fake.files.values() if not v) >= 1


def test_bad_request_is_refused_locally(provider: tuple[Case, Any]) -> None:
    case, fake = provider
    assert case.bad, "every provider has requests it would refuse"
    for fields, field_name in case.bad:
        with pytest.raises(InvalidRequest) as info:
            engine.run(_request(case, **fields))
        assert info.value.field == field_name, info.value.message
        assert info.value.allowed, "the allowed values are named"
    assert fake.submit_attempts == 0, "nothing was sent"
    if case.open_models:
        # a compatible server has models of its own: its refusal comes back as a clear provider error
        with pytest.raises(ProviderError) as perr:
            engine.run(_request(case, model="no-such-model"))
        assert perr.value.status_code == 400 and "no-such-model" in perr.value.message
        assert fake.submissions == 0
        return
    with pytest.raises(InvalidRequest) as info:
        engine.run(_request(case, model="no-such-model"))
    assert info.value.field == "model" and info.value.allowed
    assert fake.submit_attempts == 0


def test_deadline_raises_provider_timeout_with_the_task_id(provider: tuple[Case, Any], tmp_path: Path) -> None:
    case, fake = provider
    fake.polls_to_finish = 10_000
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        engine.run(_request(case, options={"timeout": 0.4}), output=tmp_path / "x.mp4")
    assert time.monotonic() - t0 < 5
    task_id = next(iter(fake.tasks))
    assert task_id in info.value.message and "resume" in info.value.message
    assert fake.submissions == 1


def test_missing_key_names_the_variable(provider: tuple[Case, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    case, fake = provider
    for var in case.key_vars:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BackendUnavailable) as info:
        engine.run(_request(case))
    assert case.key_vars[0] in info.value.message
    listed = {b.name: b for b in kinema.list_backends()}[case.backend]
    assert not listed.usable and case.key_vars[0] in (listed.reason or "")
    assert fake.submit_attempts == 0


def test_keys_never_leak(provider: tuple[Case, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case, fake = provider
    secrets = [fake.key] + list(getattr(fake, "other_secrets", []))
    backend = kinema.get_backend(case.backend)
    assert all(s not in repr(backend) for s in secrets)
    result = engine.run(_request(case), output=tmp_path / "ok.mp4")
    saved = json.dumps(result.recipe) + (tmp_path / "ok.mp4.json").read_text() + json.dumps(result.to_dict())
    assert all(s not in saved for s in secrets)
    messages = []
    fake.outcome = "fail"
    with pytest.raises(kinema.KinemaError) as info:
        engine.run(_request(case), output=tmp_path / "x.mp4")
    messages.append(str(info.value))
    # a wrong key: the provider refuses it, and the error says so without repeating it
    wrong = "wrong-" + fake.key
    for var in case.key_vars[:1]:
        monkeypatch.setenv(var, wrong)
    if case.backend != "veo":
        with pytest.raises(ProviderError) as info2:
            engine.run(_request(case), output=tmp_path / "y.mp4")
        messages.append(str(info2.value))
        assert "key" in str(info2.value).lower() or "auth" in str(info2.value).lower()
        secrets.append(wrong)
    assert all(s not in m for s in secrets for m in messages)
