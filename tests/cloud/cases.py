"""One Case per provider: its fake, the environment that points the SDK at the fake, and the requests to try.

The shared tests in test_providers.py run every Done-when scenario against every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes.base import FakeServer
from fakes.fal import FakeFal
from fakes.kling import FakeKling
from fakes.luma import FakeLuma
from fakes.modelslab import FakeModelsLab
from fakes.openai_videos import FakeOpenAIVideos
from fakes.pictory import FakePictory
from fakes.replicate import FakeReplicate
from fakes.runway import FakeRunway
from fakes.veo import FakeVeo

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.05, "timeout": 20}


@dataclass
class Case:
    backend: str
    fake: Callable[[bytes], FakeServer]
    env: Callable[[Any, Path], dict[str, str]]
    key_vars: tuple[str, ...]
    t2v: dict[str, Any]
    i2v: dict[str, Any] | None = None  # extra request fields for image-to-video; "image" filled by the test
    i2v_by_url: bool = False  # the provider takes the input image only as a public URL
    bad: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (request fields, the field refused)
    expiring_urls: bool = True  # results are served from (expiring) signed URLs
    throttled: bool = False  # the provider has a THROTTLED task state
    inline_result: bool = False  # the video comes inside the task's answer (no separate download)
    open_models: bool = False  # any model id is passed to the server (compatible servers have their own)


def _openai_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"OPENAI_API_KEY": fake.key, "KINEMA_OPENAI_VIDEOS_BASE_URL": fake.url + "/v1"}


def _runway_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"RUNWAYML_API_SECRET": fake.key, "RUNWAYML_BASE_URL": fake.url}


def _luma_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"LUMAAI_API_KEY": fake.key, "LUMAAI_BASE_URL": fake.url + "/dream-machine/v1"}


def _kling_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"KLING_ACCESS_KEY": fake.key, "KLING_SECRET_KEY": fake.secret, "KINEMA_KLING_BASE_URL": fake.url}


def _fal_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"FAL_KEY": fake.key, "KINEMA_FAL_BASE_URL": fake.url}


def _replicate_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"REPLICATE_API_TOKEN": fake.key, "REPLICATE_BASE_URL": fake.url}


def _modelslab_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"MODELSLAB_API_KEY": fake.key, "KINEMA_MODELSLAB_BASE_URL": fake.url + "/api"}


def _pictory_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {"PICTORY_API_KEY": fake.key, "KINEMA_PICTORY_BASE_URL": fake.url + "/pictoryapis"}


def _veo_env(fake: Any, tmp: Path) -> dict[str, str]:
    return {
        "GOOGLE_APPLICATION_CREDENTIALS": str(fake.write_adc(tmp)),
        "GOOGLE_CLOUD_PROJECT": fake.project,
        "GOOGLE_CLOUD_LOCATION": "us-central1",
        "GOOGLE_VERTEX_BASE_URL": fake.url,
    }


CASES: list[Case] = [
    Case(
        backend="openai",
        fake=FakeOpenAIVideos,
        env=_openai_env,
        key_vars=("OPENAI_API_KEY",),
        t2v={"model": "sora-2", "duration": 4, "width": 1280, "height": 720},
        i2v={"model": "sora-2", "duration": 8, "aspect_ratio": "9:16"},
        bad=[
            ({"model": "sora-2", "width": 1920, "height": 1080}, "size"),
            ({"model": "sora-2", "duration": 5}, "duration"),
        ],
        expiring_urls=False,
        open_models=True,
    ),
    Case(
        backend="runway",
        fake=FakeRunway,
        env=_runway_env,
        key_vars=("RUNWAYML_API_SECRET",),
        t2v={"model": "gen4.5", "duration": 5, "aspect_ratio": "16:9"},
        i2v={"model": "gen4_turbo", "duration": 5, "width": 960, "height": 960},
        bad=[
            ({"model": "gen4.5", "aspect_ratio": "1:1"}, "size"),
            ({"model": "gen4.5", "duration": 11}, "duration"),
            ({"model": "veo3.1", "duration": 5}, "duration"),
        ],
        throttled=True,
    ),
    Case(
        backend="luma",
        fake=FakeLuma,
        env=_luma_env,
        key_vars=("LUMAAI_API_KEY",),
        t2v={"model": "ray-2", "duration": 5, "aspect_ratio": "16:9", "resolution": "720p"},
        i2v={"model": "ray-flash-2", "duration": 9},
        i2v_by_url=True,
        bad=[({"duration": 6}, "duration"), ({"aspect_ratio": "3:2"}, "aspect_ratio")],
    ),
    Case(
        backend="kling",
        fake=FakeKling,
        env=_kling_env,
        key_vars=("KLING_ACCESS_KEY", "KLING_SECRET_KEY"),
        t2v={"model": "kling-v2-6", "duration": 5, "aspect_ratio": "16:9", "resolution": "720p"},
        i2v={"model": "kling-v2-1-master", "duration": 10, "aspect_ratio": "1:1", "resolution": "1080p"},
        bad=[
            ({"duration": 7}, "duration"),
            ({"aspect_ratio": "4:3"}, "aspect_ratio"),
            ({"options": {"cfg_scale": 0.5}}, "options.cfg_scale"),
        ],
    ),
    Case(
        backend="fal",
        fake=FakeFal,
        env=_fal_env,
        key_vars=("FAL_KEY",),
        t2v={"model": "fal-ai/kling-video/v2.5-turbo/pro", "duration": 5, "aspect_ratio": "16:9"},
        i2v={
            "model": "fal-ai/pika/v2.2/image-to-video",
            "duration": 10,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
        },
        bad=[
            ({"duration": 6}, "duration"),
            ({"aspect_ratio": "4:3"}, "aspect_ratio"),
            ({"model": "fal-ai/pika/v2.5", "image": "https://example.com/first.png"}, "image"),
        ],
    ),
    Case(
        backend="replicate",
        fake=FakeReplicate,
        env=_replicate_env,
        key_vars=("REPLICATE_API_TOKEN",),
        t2v={"model": "minimax/video-01"},
        i2v={"model": "kwaivgi/kling-v2.1", "duration": 10, "resolution": "1080p", "aspect_ratio": "16:9"},
        bad=[
            ({"model": "minimax/video-01", "duration": 5}, "duration"),
            ({"model": "kwaivgi/kling-v2.1"}, "image"),
            ({"model": "kwaivgi/kling-v2.1:abc"}, "model"),
        ],
    ),
    Case(
        backend="modelslab",
        fake=FakeModelsLab,
        env=_modelslab_env,
        key_vars=("MODELSLAB_API_KEY",),
        t2v={"model": "cogvideox", "width": 256, "height": 256, "num_frames": 16},
        i2v={"width": 256, "height": 256},
        i2v_by_url=True,
        bad=[
            ({"width": 768, "height": 512}, "width"),
            ({"num_frames": 30}, "num_frames"),
            ({"fps": 24}, "fps"),
            ({"guidance_scale": 9}, "guidance_scale"),
        ],
    ),
    Case(
        backend="pictory",
        fake=FakePictory,
        env=_pictory_env,
        key_vars=("PICTORY_API_KEY",),
        t2v={"model": "pixverse5.5", "duration": 8, "aspect_ratio": "4:3"},
        i2v={"model": "veo3.1_fast", "duration": 6, "aspect_ratio": "9:16"},
        i2v_by_url=True,
        bad=[
            ({"model": "veo3.1", "aspect_ratio": "1:1"}, "aspect_ratio"),
            ({"duration": 6}, "duration"),
            ({"prompt": "fox"}, "prompt"),
        ],
    ),
    Case(
        backend="veo",
        fake=FakeVeo,
        env=_veo_env,
        key_vars=("GOOGLE_APPLICATION_CREDENTIALS",),
        t2v={"model": "veo-3.1-fast-generate-001", "duration": 8, "aspect_ratio": "16:9", "resolution": "720p"},
        i2v={"model": "veo-3.1-generate-001", "duration": 4, "aspect_ratio": "9:16", "resolution": "1080p"},
        bad=[({"duration": 5}, "duration"), ({"aspect_ratio": "1:1"}, "aspect_ratio")],
        expiring_urls=False,
        inline_result=True,
    ),
]
