"""``kinema models`` and ``kinema pull``: the local-model catalog and its weights.

Weights live in the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``), the same one every diffusers user has; only
``kinema pull`` downloads, and only safetensors weights plus configs and tokenizer files, all from one commit.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from .console import err, fail, out

MODELS_EXAMPLES = """
Examples:

  kinema models

  kinema models --json
"""

PULL_EXAMPLES = """
Examples:

  kinema pull wan2.1-t2v-1.3b

  kinema pull Wan-AI/Wan2.2-TI2V-5B-Diffusers --revision main

  HF_HOME=/data/hf kinema pull ltx-video
"""

#: files that are never weights Kinema loads, and configs/tokenizers it needs
_CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def model_rows() -> list[dict[str, Any]]:
    """Every catalog entry with whether its weights are in the cache (and at which commit)."""
    from ..backends.catalog import CATALOG
    from ..backends.diffusers import cached_snapshot, missing_components

    rows = []
    for entry in CATALOG.values():
        folder = None
        for repo in (entry.repo, *entry.aliases):
            folder = cached_snapshot(repo, entry.revision)
            if folder is not None:
                break
        present = folder is not None and not missing_components(folder)
        row = entry.to_dict()
        row.update(
            present=present, path=str(folder) if folder else None, snapshot=folder.name if folder is not None else None
        )
        rows.append(row)
    return rows


def _frame_examples(model: str) -> str:
    """The first allowed frame counts ("17, 21, 25, ..."): a rule like 4k+1 reads as a typo in a table."""
    from ..backends.catalog import CATALOG

    caps = CATALOG[model].capabilities()
    if caps.frame_step == 1:
        return "any"
    counts = caps.allowed_frames(4)
    return ", ".join(map(str, counts[:3])) + (", ..." if len(counts) > 3 else "")


def _licence(name: str, commercial: bool) -> str:
    if commercial or "non-commercial" in name.lower():
        return escape(name)
    return f"{escape(name)} [yellow](no commercial use)[/]"


def models(as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False) -> None:
    """List the local models (diffusers backend), their defaults, licences, and whether their weights are here."""
    from rich import box
    from rich.table import Table

    from ..backends.base import require_module
    from ..backends.diffusers import hub_cache_dir
    from ..errors import KinemaError

    try:  # whether weights are cached is the Hub client's to say
        require_module("huggingface_hub", "local", feature="kinema models")
    except KinemaError as exc:
        fail(exc)
    rows = model_rows()
    if as_json:
        sys.stdout.write(json.dumps({"cache": str(hub_cache_dir()), "models": rows}, default=str) + "\n")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # the id is what a user copies into --model and `kinema pull`: never cut; the other columns wrap at spaces
    table.add_column("model", no_wrap=True, min_width=max(len(r["id"]) for r in rows))
    for name, least in (("here", 4), ("modes", 6), ("default", 8), ("frames", 6), ("GPU GB", 4), ("licence", 10)):
        table.add_column(name, min_width=least, overflow="fold")
    for r in rows:
        w, h = r["default_size"]
        table.add_row(
            r["id"],
            "[green]yes[/]" if r["present"] else "no",
            ", ".join(r["modes"]),
            f"{w}x{h} {r['default_frames']}f {r['default_fps']:g}fps",
            _frame_examples(r["id"]),
            f"{r['min_gpu_gb']:g}",
            _licence(r["license"].split(" (")[0], r["commercial_use"]),
        )
    out.print(table)
    out.print(f"cache: {hub_cache_dir()}  (get weights with: kinema pull MODEL)", highlight=False)


def unreachable_message(model: str, repo: str, endpoint: str | None, exc: BaseException) -> str:
    """Why ``kinema pull`` cannot download (the Hub does not answer) and how to bring the weights here instead."""
    from ..backends.diffusers import hub_cache_dir

    host = endpoint or "https://huggingface.co"
    folder = f"models--{repo.replace('/', '--')}"
    return (
        f"cannot reach the Hugging Face Hub at {host} to download {repo} ({type(exc).__name__}: {exc}). "
        f"Check the network (or a proxy: HTTPS_PROXY; a mirror: HF_ENDPOINT). On an offline machine, pull on one "
        f"with internet: 'HF_HOME=/tmp/hf kinema pull {model}', then copy /tmp/hf/hub/{folder} into "
        f"{hub_cache_dir()}/ here (or point HF_HOME at a copy of /tmp/hf); 'kinema models' then shows it as here"
    )


def select_files(files: Sequence[tuple[str, int | None]], variant: str | None) -> list[tuple[str, int | None]]:
    """The files of a diffusers repo Kinema downloads: configs, tokenizer files and safetensors weights only.

    With ``variant`` ("fp16"), a folder that has variant weights gets only those; others get their plain weights.
    """
    weights = [f for f in files if f[0].endswith(".safetensors")]
    tag = re.compile(rf"\.{re.escape(variant)}(\.|-)") if variant else None
    variant_dirs = {os.path.dirname(name) for name, _ in weights if tag and tag.search(os.path.basename(name))}
    chosen = []
    for name, size in files:
        base = os.path.basename(name)
        if name.endswith(".safetensors"):
            is_variant = bool(tag and tag.search(base))
            if (os.path.dirname(name) in variant_dirs) != is_variant:
                continue
        elif not base.endswith(_CONFIG_SUFFIXES) or base.startswith("."):
            continue
        chosen.append((name, size))
    return chosen


def _pull_repo(model: str, repo: str, rev: str, variant: str | None, endpoint: str | None) -> dict[str, Any]:
    """Download one Hub repo's configs and safetensors at ``rev`` (resolved to one commit) into the cache."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from ..backends.diffusers import hub_cache_dir
    from ..errors import KinemaError, ModelNotFound

    api = HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo, revision=rev, files_metadata=True, timeout=20)
    except GatedRepoError:
        raise KinemaError(
            f"{repo} is gated: accept its licence at https://huggingface.co/{repo} and set HF_TOKEN to a token of "
            "that account"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFound(f"model: no Hub repo {repo!r} (or it is private: set HF_TOKEN)") from None
    except HfHubHTTPError as exc:  # the Hub answered, with an error
        raise KinemaError(
            f"the Hugging Face Hub refused {repo} ({exc}). Check the name and HF_TOKEN, or try again later"
        ) from None
    except Exception as exc:  # no answer: DNS, refused connection, timeout, proxy (httpx's errors are no OSError)
        raise KinemaError(unreachable_message(model, repo, endpoint, exc)) from None
    files = [(s.rfilename, s.size) for s in (info.siblings or [])]
    chosen = select_files(files, variant)
    if not any(name.endswith(".safetensors") for name, _ in chosen):
        raise ModelNotFound(
            f"model: {repo} has no safetensors weights, and Kinema downloads no other format "
            "(pickled .bin/.pt files can run code when loaded)"
        )
    total = sum(size or 0 for _, size in chosen)
    err.print(
        f"pulling {repo} at {info.sha} ({len(chosen)} files, {total / 1e9:.1f} GB) into {hub_cache_dir()}",
        highlight=False,
    )
    # download by the resolved commit so every file comes from one snapshot, then point refs/<rev> at it
    # (what the Hub client does for branches) so the loader finds it by the same name
    try:
        path = snapshot_download(
            repo,
            revision=info.sha,
            cache_dir=hub_cache_dir(),
            allow_patterns=[name for name, _ in chosen],
            endpoint=endpoint,
        )
    except HfHubHTTPError as exc:
        raise KinemaError(f"the Hugging Face Hub refused a file of {repo} ({exc}); run this again to resume") from None
    except Exception as exc:  # the connection dropped mid-download: what is cached stays, a re-run resumes
        raise KinemaError(unreachable_message(model, repo, endpoint, exc)) from None
    if info.sha and rev != info.sha:
        ref = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "refs" / rev
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(info.sha)
    return {"repo": repo, "revision": info.sha, "path": str(path), "files": len(chosen), "bytes": total}


def pull(
    model: Annotated[str, typer.Argument(help="A catalog id (see 'kinema models') or a Hub repo id (org/name).")],
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit id (default: the catalog's pin, else main)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Download a model's weights into the Hugging Face cache (safetensors only, one pinned commit).

    A catalog model whose options need another repo gets it too: LTX-Video's latent upsampler
    (--option multiscale=true), which the run looks for in the cache and never downloads itself.
    """
    from ..backends.base import require_module
    from ..backends.catalog import get_entry
    from ..errors import InvalidRequest, KinemaError

    try:
        if Path(model).expanduser().is_dir():
            out.print(f"{model} is a local folder: nothing to download", highlight=False)
            return
        entry = get_entry(model)
        repo = entry.repo if entry else model
        if entry is None and not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
            from ..backends.catalog import CATALOG

            raise InvalidRequest(
                "model",
                f"{model!r} is neither a catalog id nor a Hub repo id",
                value=model,
                allowed=", ".join(CATALOG) + ", or org/name",
            )
        if _truthy("HF_HUB_OFFLINE"):
            raise KinemaError(
                f"cannot download {repo}: HF_HUB_OFFLINE is set, so no network access is allowed. "
                "Unset it on a machine with internet and run this again"
            )
        require_module("huggingface_hub", "local", feature="kinema pull")
        endpoint = os.environ.get("HF_ENDPOINT") or None
        rev = revision or (entry.revision if entry else None) or "main"
        result: dict[str, Any] = {
            "model": model,
            **_pull_repo(model, repo, rev, entry.variant if entry else None, endpoint),
        }
        upsampler = entry.multiscale.upsampler if entry and entry.multiscale else None
        if upsampler:  # the upsampler is looked up on its main branch (diffusers.locate_upsampler)
            err.print(f"{model}'s --option multiscale=true needs its latent upsampler too", highlight=False)
            result["upsampler"] = _pull_repo(model, upsampler, "main", None, endpoint)
    except KinemaError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for part in (result, result.get("upsampler")):
        if part:
            out.print(f"[green]pulled[/] {part['repo']} at {part['revision']} -> {part['path']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="models", epilog=MODELS_EXAMPLES)(models)
    app.command(name="pull", epilog=PULL_EXAMPLES)(pull)
