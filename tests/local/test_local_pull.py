"""`kinema pull` against a fake Hub served to the official client (huggingface_hub), then the model run offline from
what it left in the cache: the only test of a pull that succeeds."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_local_ltx_multiscale import LTX_REPO, UPSAMPLER_REPO, run
from typer.testing import CliRunner

from kinema.cli import app

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the fakes (tests/fakes) are shared
from fakes.hub import FakeHub  # noqa: E402

runner = CliRunner()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _online(monkeypatch: pytest.MonkeyPatch, hub: FakeHub, on: bool) -> None:
    """The Hub client reads HF_HUB_OFFLINE once, at import: set its constant as well as the environment."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", not on)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0" if on else "1")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)


def test_pull_ltx_video_brings_its_upsampler_and_the_multiscale_run_finds_both_offline(
    _empty_hf_cache: Path, tiny_checkpoint: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kinema pull ltx-video` fetched the checkpoint only; `--option multiscale=true` then failed offline for
    want of the latent upsampler, which the run never downloads itself."""
    model = _files(tiny_checkpoint("ltx-condition"))
    model["transformer/diffusion_pytorch_model.bin"] = b"a pickle: never fetched"
    upsampler = _files(tiny_checkpoint("ltx-upsampler"))
    with FakeHub({LTX_REPO: model, UPSAMPLER_REPO: upsampler}) as hub:
        _online(monkeypatch, hub, True)
        res = runner.invoke(app, ["pull", "ltx-video", "--json"])
        assert res.exit_code == 0, res.output
        pulled = json.loads(res.stdout)
        assert (pulled["repo"], pulled["revision"]) == (LTX_REPO, hub.commit(LTX_REPO))
        assert (pulled["upsampler"]["repo"], pulled["upsampler"]["revision"]) == (
            UPSAMPLER_REPO,
            hub.commit(UPSAMPLER_REPO),
        )
        assert "needs its latent upsampler too" in res.stderr
        # safetensors, configs and tokenizer files, each once; no pickle
        wanted = {f"{LTX_REPO}/{p}" for p in model if not p.endswith(".bin")}
        wanted |= {f"{UPSAMPLER_REPO}/{p}" for p in upsampler}
        assert set(hub.fetched) == wanted and set(hub.fetched.values()) == {1}
        for repo in (LTX_REPO, UPSAMPLER_REPO):  # found by branch name, as the loader looks
            ref = _empty_hf_cache / "hub" / f"models--{repo.replace('/', '--')}" / "refs" / "main"
            assert ref.read_text() == hub.commit(repo)

        # a second pull downloads nothing again
        assert runner.invoke(app, ["pull", "ltx-video"]).exit_code == 0
        assert set(hub.fetched.values()) == {1}

        _online(monkeypatch, hub, False)
        requests = len(hub.log)
        result = run("ltx-video", size=(160, 128), steps=None)
        assert result.video.frames.shape == (9, 128, 160, 3)
        assert result.recipe["engine"]["multiscale"]["upsampler"] == UPSAMPLER_REPO
        assert len(hub.log) == requests, "the offline run asked the Hub"


def test_pull_of_an_unknown_repo_names_it(_empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({}) as hub:
        _online(monkeypatch, hub, True)
        res = runner.invoke(app, ["pull", "someone/no-such-model"])
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert "no Hub repo 'someone/no-such-model'" in " ".join(res.stderr.split())
