"""A clip to edit given as an http(s) URL: downloaded under a size limit, decoded, and edited like a local file."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import kinema
from kinema.errors import InvalidRequest
from kinema.media import io
from kinema.video import Video


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A clip and a text file under a local HTTP server; yields its base URL."""
    frames = np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    Video(frames, fps=8).save(tmp_path / "clip.mp4")
    (tmp_path / "notes.txt").write_text("not a video")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_downloaded_and_decoded(served: str) -> None:
    frames, fps = io.load_video_frames(f"{served}/clip.mp4", field="source_video")
    assert frames.shape == (16, 64, 64, 3) and fps == 8


def test_bad_urls_name_the_field(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequest) as exc:
        io.load_video_frames(f"{served}/missing.mp4", field="source_video")
    assert exc.value.field == "source_video" and "could not download" in str(exc.value)
    with pytest.raises(InvalidRequest) as exc:
        io.load_video_frames(f"{served}/notes.txt", field="source_video")
    assert exc.value.field == "source_video"
    monkeypatch.setattr(io, "MAX_VIDEO_BYTES", 100)
    with pytest.raises(InvalidRequest) as exc:
        io.load_video_frames(f"{served}/clip.mp4", field="source_video")
    assert exc.value.field == "source_video" and "larger than" in str(exc.value)


def test_the_builtin_model_edits_a_clip_given_by_url(served: str, tmp_path: Path) -> None:
    url = f"{served}/clip.mp4"
    result = kinema.generate(
        "a red ball bouncing at night", source_video=url, strength=0.5, seed=1, num_inference_steps=4
    )
    assert result.video.num_frames == 16
    assert result.recipe["source_video"] == url  # a URL is recorded as given
    # the same clip from the served folder on disk gives the same edit
    same = kinema.generate(
        "a red ball bouncing at night",
        source_video=str(tmp_path / "clip.mp4"),
        strength=0.5,
        seed=1,
        num_inference_steps=4,
    )
    assert np.array_equal(result.video.frames, same.video.frames)
