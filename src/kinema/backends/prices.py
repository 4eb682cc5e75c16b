"""A small table of list prices, to estimate in USD what a cloud generation cost where the provider says nothing
in money.

Providers report cost in their own units (Runway credits, Kling units, Pictory AI credits, fal and Replicate
seconds of compute, ModelsLab generation time) or not at all (Luma, Veo). :func:`with_estimate` keeps what the
provider said and, where it said no USD figure, adds one from this table, marked ``"estimate": True`` with the
table's date and source. Every price here is from third-party summaries of the providers' pricing pages
(shared/reference/provider-apis.md, 2026-11-21) and is [unverified]: treat it as a rough guide, never a bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import GenerationParams

__all__ = ["PRICES_DATE", "Price", "PRICES", "UNIT_PRICES", "with_estimate"]

#: when the table was compiled
PRICES_DATE = "2026-11-21"
_SRC = "shared/reference/provider-apis.md"


@dataclass(frozen=True)
class Price:
    """USD for a clip: ``per_clip`` for the first ``clip_seconds`` plus ``per_second`` beyond (or per second
    throughout when ``per_clip`` is 0). ``by_short_side`` overrides the clip price by resolution."""

    per_second: float = 0.0
    per_clip: float = 0.0
    clip_seconds: float = 0.0
    by_short_side: tuple[tuple[int, float], ...] = ()
    source: str = _SRC

    def usd(self, seconds: float, short_side: int) -> float:
        per_clip = self.per_clip
        if self.by_short_side:
            per_clip = min(self.by_short_side, key=lambda kv: abs(kv[0] - short_side))[1]
        if per_clip:
            if self.per_second:
                return per_clip + max(0.0, seconds - self.clip_seconds) * self.per_second
            return per_clip * max(1.0, seconds / self.clip_seconds)
        return seconds * self.per_second


_RAY2 = ((540, 0.40), (720, 0.71), (1080, 1.59), (2160, 6.37))
#: (backend, model) -> price; a model missing here gets no USD estimate
PRICES: dict[tuple[str, str], Price] = {
    # Luma: USD per 5 s clip by resolution; a 9 s clip costs about 1.8x [3P Comfy pricing table]
    ("luma", "ray-2"): Price(per_clip=1.0, clip_seconds=5.0, by_short_side=_RAY2, source=f"{_SRC} §2 [3P]"),
    ("luma", "ray-flash-2"): Price(
        per_clip=1.0,
        clip_seconds=5.0,
        by_short_side=tuple((s, round(p / 3, 2)) for s, p in _RAY2),
        source=f"{_SRC} §2 [3P]: about 1/3 of ray-2",
    ),
    # Veo 3.1 on Vertex: USD per second of output (with audio) [3P]
    ("veo", "veo-3.1-generate-001"): Price(per_second=0.40, source=f"{_SRC} §4 [3P]"),
    ("veo", "veo-3.1-fast-generate-001"): Price(per_second=0.15, source=f"{_SRC} §4 [3P]"),
    # fal: Kling v2 master $1.40 per 5 s + $0.28 per extra second; Pika 2.2 about $0.20 per 5 s at 720p [3P]
    ("fal", "fal-ai/kling-video/v2/master"): Price(
        per_second=0.28, per_clip=1.40, clip_seconds=5.0, source=f"{_SRC} §6 [3P]"
    ),
    ("fal", "fal-ai/pika/v2.2"): Price(per_clip=0.20, clip_seconds=5.0, source=f"{_SRC} §6 [3P]"),
}
#: backend -> (USD per unit the provider reports, the unit's name in Result.cost, source)
UNIT_PRICES: dict[str, tuple[float, str, str]] = {
    "runway": (0.01, "credits", f"{_SRC} §1 [DOC via 3P]: $0.01 a credit"),
    "kling": (0.14, "units", f"{_SRC} §5 [3P]: a video unit about $0.14"),
}


def _family(backend: str, model: str) -> str:
    if backend == "fal":
        for suffix in ("/text-to-video", "/image-to-video"):
            if model.endswith(suffix):
                return model[: -len(suffix)]
    return model


def with_estimate(backend: str, params: GenerationParams, cost: dict[str, Any] | None) -> dict[str, Any] | None:
    """``cost`` (what the provider reported) plus ``usd`` where the provider gave no money figure and the table
    has a price; an estimated ``usd`` comes with ``estimate: True``, ``price_date`` and ``price_source``."""
    out = dict(cost or {})
    if "usd" in out:
        return out or None
    unit = UNIT_PRICES.get(backend)
    if unit is not None and isinstance(out.get(unit[1]), int | float):
        out.update(
            usd=round(float(out[unit[1]]) * unit[0], 4), estimate=True, price_date=PRICES_DATE, price_source=unit[2]
        )
        return out
    price = PRICES.get((backend, _family(backend, str(params.model))))
    if price is not None:
        usd = price.usd(params.duration, min(params.width, params.height))
        out.update(usd=round(usd, 4), estimate=True, price_date=PRICES_DATE, price_source=price.source)
    return out or None
