"""Many requests at once: a JSONL or CSV file of requests, run with bounded concurrency, resumable.

Each row (a JSON object per line, or a CSV row under a header) holds any :class:`~kinema.VideoRequest` field, plus
``name`` (the output file's stem) and ``postprocess`` (a chain of steps, see :mod:`kinema.media.enhance`). Relative
paths (``image``, ``video``, each timed keyframe's ``image``, a soundtrack) are relative to the batch file. In a CSV,
``options``, ``postprocess`` and ``keyframes`` cells are JSON (``[{"time": 1, "image": "mid.png"}]``).

- The whole file is read and every row validated before anything is generated; a bad row refuses the file with its
  line and field named (``line 7.num_frames: ...``), unless ``skip_invalid`` reports it as failed and runs the rest.
- Every row is also planned against its backend (:func:`kinema.plan`: sizes, frame rules, models) before anything
  runs, so a row the backend would refuse refuses the file too (or, with ``skip_invalid``, fails alone).
- Rows run through :func:`kinema.engine.run`, ``concurrency`` at a time; one failure does not stop the others.
- Resumable: each row's output is named by a hash of its request, so a re-run skips the rows whose output exists.
- ``batch-report.json`` in the output folder has one entry per row: status, path, seed, seconds, cost, and for a
  failed row its error (type, field, message). It is rewritten as rows finish, so a crash leaves an honest report.

>>> from kinema.batch import load_batch  # doctest: +SKIP
>>> rows = load_batch("examples/batch.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Cancelled, InvalidRequest, error_dict
from .request import VideoRequest, map_input_paths
from .video import write_json_atomic

__all__ = ["BatchRow", "BatchReport", "load_batch", "parse_rows", "run_batch", "REPORT_NAME", "row_key"]

REPORT_NAME = "batch-report.json"
#: keys a row may have besides the VideoRequest fields
EXTRA_KEYS = ("name", "postprocess")
_INT_FIELDS = {"num_frames", "width", "height", "num_inference_steps", "seed"}
_FLOAT_FIELDS = {"duration", "fps", "guidance_scale"}
_JSON_FIELDS = {"options", "postprocess", "keyframes"}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def request_keys() -> tuple[str, ...]:
    return tuple(VideoRequest.model_fields)


def allowed_keys() -> tuple[str, ...]:
    """A row's fields: the request's and the batch's own, each once (``postprocess`` is both)."""
    return tuple(dict.fromkeys([*request_keys(), *EXTRA_KEYS]))


@dataclass
class BatchRow:
    """One row of a batch file: where it was (``line``), what it asks and, if it is bad, why."""

    line: int
    data: dict[str, Any]
    request: VideoRequest | None = None
    postprocess: list[Any] = field(default_factory=list)
    name: str | None = None
    key: str = ""
    error: InvalidRequest | None = None

    @property
    def valid(self) -> bool:
        return self.error is None and self.request is not None


@dataclass
class BatchReport:
    """What a batch run did, row by row; ``to_dict`` is what ``batch-report.json`` holds."""

    source: str
    output_dir: str
    rows: list[dict[str, Any]]
    started_at: float
    finished_at: float | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return self.counts.get("failed", 0) == 0 and self.counts.get("pending", 0) == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output_dir": self.output_dir,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": self.counts,
            "rows": self.rows,
        }


# -- reading and validating ------------------------------------------------------------------------------------------
def _coerce_csv(name: str, text: str, where: str) -> Any:
    """CSV cells are text; turn them into the type the field wants, naming the cell when that fails."""
    text = text.strip()
    if name in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise InvalidRequest(where, f"{text!r} is not a whole number", value=text) from None
    if name in _FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            raise InvalidRequest(where, f"{text!r} is not a number", value=text) from None
    if name in _JSON_FIELDS:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(where, f"is not valid JSON ({exc.msg})", value=text) from None
    return text


def parse_rows(text: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, raw row) pairs of a JSONL or CSV text; malformed lines raise, naming the line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    if kind == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or stripped.startswith("//"):
                continue
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(
                    f"line {n}", f"is not valid JSON ({exc.msg} at column {exc.colno})", value=stripped[:200]
                ) from None
            if not isinstance(value, dict):
                raise InvalidRequest(
                    f"line {n}", f"must be a JSON object of request fields, not {type(value).__name__}"
                )
            rows.append((n, value))
        return rows
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    allowed = set(request_keys()) | set(EXTRA_KEYS)
    for col in header:
        if col is None or col.strip() not in allowed:
            raise InvalidRequest(
                f"line 1.{col}", "is not a known column", value=col, allowed=", ".join([*request_keys(), *EXTRA_KEYS])
            )
    for raw in reader:
        n = reader.line_num
        if None in raw:  # more cells than header columns
            raise InvalidRequest(f"line {n}", f"has more cells than the header's {len(header)} columns")
        row: dict[str, Any] = {}
        for key, cell in raw.items():
            if cell is None or not str(cell).strip():
                continue  # an empty cell means "not given"
            name = key.strip()
            row[name] = _coerce_csv(name, str(cell), f"line {n}.{name}")
        if row:
            rows.append((n, row))
    return rows


def _resolve_path(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not value.startswith(("http://", "https://")) and "://" not in value:
        p = Path(value).expanduser()
        if not p.is_absolute() and (base / p).exists():
            return str(base / p)
    return value


def resolve_relative(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a row (its input images and clips, a soundtrack or model in its chain) taken relative to ``base``
    where such a file exists there (otherwise the path is kept, as the user's working folder gives it)."""
    out = map_input_paths(data, lambda value: _resolve_path(value, base))
    chain = out.get("postprocess")
    if isinstance(chain, list):
        fixed = []
        for step in chain:
            if isinstance(step, dict):
                step = dict(step)
                for k in ("path", "model"):
                    if k in step:
                        step[k] = _resolve_path(step[k], base)
            fixed.append(step)
        out["postprocess"] = fixed
    return out


def _renamed(exc: InvalidRequest, prefix: str) -> InvalidRequest:
    message = exc.message[len(exc.field) + 2 :] if exc.message.startswith(exc.field + ": ") else exc.message
    return InvalidRequest(f"{prefix}.{exc.field}", message, value=exc.value)


def build_row(
    line: int, raw: dict[str, Any], *, base: Path, defaults: dict[str, Any] | None = None, prefix: str | None = None
) -> BatchRow:
    """Validate one row into a request (defaults first, the row's own fields over them)."""
    from .backends import backend_names
    from .media.enhance import chain_to_json, validate_chain
    from .planner import plan

    where = prefix or f"line {line}"
    row = BatchRow(line=line, data=dict(raw))
    try:
        allowed = set(request_keys()) | set(EXTRA_KEYS)
        for key in raw:
            if key not in allowed:
                raise InvalidRequest(
                    f"{where}.{key}", "is not a known field", value=key, allowed=", ".join(allowed_keys())
                )
        data = {**(defaults or {}), **resolve_relative(raw, base)}
        name = data.pop("name", None)
        if name is not None and (not isinstance(name, str) or not _NAME_OK.match(name)):
            raise InvalidRequest(
                f"{where}.name",
                f"{name!r} is not a usable file name",
                allowed="letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        try:
            chain = validate_chain(data.pop("postprocess", None))
        except InvalidRequest as exc:
            raise _renamed(exc, where) from None
        try:
            request = VideoRequest(**data)
        except InvalidRequest as exc:
            raise _renamed(exc, where) from None
        if request.backend is not None and request.backend not in backend_names():
            raise InvalidRequest(
                f"{where}.backend",
                f"unknown backend {request.backend!r}",
                value=request.backend,
                allowed=", ".join(backend_names()),
            )
        try:  # checked against the backend now (sizes, frame rules, models), so nothing runs for a bad row
            plan(request.model_copy(update={"postprocess": chain_to_json(chain)}), check_available=False, seed=0)
        except InvalidRequest as exc:
            raise _renamed(exc, where) from None
        row.request, row.postprocess, row.name = request, chain, name
        row.key = row_key(request, chain)
    except InvalidRequest as exc:
        row.error = exc
    return row


def row_key(request: VideoRequest, chain: Iterable[Any] = ()) -> str:
    """The hash that names a row's output: its request as asked (seed included, random or not) and its chain."""
    recipe = request.recipe()
    steps = [s.model_dump() if hasattr(s, "model_dump") else s for s in chain]
    text = json.dumps({"request": recipe, "postprocess": steps}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise InvalidRequest(
        "file",
        f"{path.name}: unknown batch file type {suffix!r}",
        value=str(path),
        allowed=".jsonl (one JSON object per line) or .csv (a header of field names)",
    )


def load_batch(
    path: str | os.PathLike[str], *, defaults: dict[str, Any] | None = None, skip_invalid: bool = False
) -> list[BatchRow]:
    """Read and validate a whole batch file before anything runs.

    A bad row raises :class:`InvalidRequest` naming its line and field (all problems are listed in the message);
    with ``skip_invalid`` bad rows come back with ``error`` set instead, to be reported as failed.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidRequest("file", f"batch file not found: {p}", value=str(p))
    kind = _kind(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("file", f"{p.name} is not UTF-8 text ({exc.reason})", value=str(p)) from None
    raw_rows = parse_rows(text, kind)
    if not raw_rows:
        raise InvalidRequest("file", f"{p.name} holds no requests", value=str(p))
    if defaults:
        for key in defaults:
            if key not in request_keys() and key not in EXTRA_KEYS:
                raise InvalidRequest(
                    f"defaults.{key}", "is not a known field", value=key, allowed=", ".join(allowed_keys())
                )
    rows = [build_row(n, raw, base=p.parent.resolve(), defaults=defaults) for n, raw in raw_rows]
    bad = [r for r in rows if r.error is not None]
    if bad and not skip_invalid:
        first = bad[0].error
        assert first is not None
        if len(bad) == 1:
            raise first
        others = "; ".join(r.error.message for r in bad[1:6] if r.error is not None)
        more = f" (and {len(bad) - 6} more)" if len(bad) > 6 else ""
        raise InvalidRequest(
            first.field, f"{first.message[len(first.field) + 2 :]}; also {others}{more}", value=first.value
        )
    return rows


# -- running -------------------------------------------------------------------------------------------------------
def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "clip"


def output_name(row: BatchRow) -> str:
    assert row.request is not None
    fmt = row.request.format or "mp4"
    stem = row.name or _slug(row.request.prompt)
    suffix = "" if fmt == "png" else f".{fmt}"
    return f"{stem}-{row.key[:10]}{suffix}"


def run_one(request: VideoRequest, chain: list[Any], path: Path, *, cache: Any = None, cancel: Any = None) -> Any:
    """Generate one request with its chain, saved at ``path``: the engine's one path, through the cache if given."""
    from .engine import run
    from .media.enhance import chain_to_json

    if chain:
        request = request.model_copy(update={"postprocess": chain_to_json(chain)})
    return run(request, output=path, cache=cache, cancel=cancel)


def run_batch(
    rows: list[BatchRow] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    concurrency: int = 2,
    defaults: dict[str, Any] | None = None,
    skip_invalid: bool = False,
    cache: Any = None,
    cancel: Any = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:
    """Run every row (validated first when given a path); returns the report, also written to ``batch-report.json``.

    Rows whose output already exists are skipped (resume). ``on_row`` is called with each row's report entry as it
    finishes. ``cache`` is a :class:`kinema.cache.ResultCache` (or its folder) consulted before generating.
    """
    from .backends.base import CancelToken

    if not 1 <= concurrency <= 64:
        raise InvalidRequest("concurrency", f"must be between 1 and 64, got {concurrency}", value=concurrency)
    source = "<rows>"
    if not isinstance(rows, list):
        source = str(rows)
        rows = load_batch(rows, defaults=defaults, skip_invalid=skip_invalid)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    token = cancel or CancelToken()
    report = BatchReport(source=source, output_dir=str(out_dir), rows=[], started_at=time.time())
    lock = threading.Lock()
    report_path = out_dir / REPORT_NAME

    entries: list[dict[str, Any]] = []
    todo: list[tuple[BatchRow, dict[str, Any]]] = []
    first_of: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry: dict[str, Any] = {
            "line": row.line,
            "name": row.name,
            "key": row.key[:16] or None,
            "status": "pending",
            "path": None,
            "seed": None,
            "time": None,
            "cost": None,
            "error": None,
        }
        entries.append(entry)
        if row.error is not None or row.request is None:
            entry["status"] = "failed"
            entry["error"] = error_dict(row.error or InvalidRequest(f"line {row.line}", "is invalid"))
            continue
        entry["prompt"] = row.request.prompt
        path = out_dir / output_name(row)
        entry["path"] = str(path)
        if row.key in first_of:  # the same request twice: made once, reported for both lines
            entry["duplicate_of_line"] = first_of[row.key]["line"]
            continue
        first_of[row.key] = entry
        if _is_done(path):
            meta = _read_sidecar(path)
            entry.update(status="skipped", seed=meta.get("seed"), cost=meta.get("cost"), time=0.0)
            continue
        todo.append((row, entry))
    report.rows = entries

    def save_report() -> None:
        with lock:
            write_json_atomic(report_path, report.to_dict())

    save_report()

    def work(row: BatchRow, entry: dict[str, Any]) -> None:
        assert row.request is not None
        if token.cancelled:
            entry.update(status="failed", error=error_dict(Cancelled("the batch was cancelled")))
            return
        t0 = time.perf_counter()
        try:
            result = run_one(row.request, row.postprocess, Path(entry["path"]), cache=cache, cancel=token)
        except KeyboardInterrupt:
            token.cancel()
            entry.update(status="failed", error=error_dict(Cancelled("the batch was cancelled")))
            raise
        except Exception as exc:  # one row's failure must not stop the others
            if isinstance(exc, InvalidRequest):  # a backend refused a parameter: name the row's line too
                exc = _renamed(exc, f"line {row.line}")
            entry.update(status="failed", error=error_dict(exc), time=round(time.perf_counter() - t0, 3), path=None)
        else:
            entry.update(
                status="done",
                seed=result.seed,
                cost=result.cost,
                time=round(time.perf_counter() - t0, 3),
                path=str(result.path),
            )
            if result.warnings:
                entry["warnings"] = list(result.warnings)

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kinema-batch") as pool:
            futures = {pool.submit(work, row, entry): entry for row, entry in todo}
            try:
                for fut in as_completed(futures):
                    fut.result()
                    save_report()
                    if on_row is not None:
                        on_row(futures[fut])
            except KeyboardInterrupt:
                token.cancel()
                for f in futures:
                    f.cancel()
                raise
    finally:
        for entry in entries:  # duplicates follow the row they repeat
            if "duplicate_of_line" in entry:
                twin = next(e for e in entries if e["line"] == entry["duplicate_of_line"])
                for k in ("status", "seed", "cost", "error"):
                    entry[k] = twin[k]
                entry["time"] = 0.0
        report.finished_at = time.time()
        save_report()
    return report


def _is_done(path: Path) -> bool:
    from .video import sidecar_path

    return path.exists() and sidecar_path(path).is_file()


def _read_sidecar(path: Path) -> dict[str, Any]:
    from .video import sidecar_path

    try:
        value = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        return value if isinstance(value, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}
