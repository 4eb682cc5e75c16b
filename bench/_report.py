"""Write a benchmark's section into BENCHMARKS.md (replacing that section, keeping the others)."""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = """# Benchmarks

Each section is written by the script named in it (`./run python bench/<name>.py`). Speed targets are ratios measured
side by side in one run on the same machine; absolute times are only meaningful for the hardware named.
"""


def machine() -> str:
    import os

    cpu = f"{platform.machine()} {platform.processor() or ''}".strip()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def emit(name: str, text: str, figures: dict[str, Any], *, as_json: bool, write: bool) -> None:
    """Print a GPU benchmark's result (``figures`` as one JSON object, or the table ``text``) and, when ``write``,
    replace its section of BENCHMARKS.md with ``text``."""
    import json

    print(json.dumps(figures) if as_json else text)
    if write:
        write_section(name, text)
