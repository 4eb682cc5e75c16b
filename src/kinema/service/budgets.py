"""Per-key budgets, without the HTTP layer: one check shared by every front door that submits jobs (the HTTP API's
``POST /v1/videos`` and ``POST /v1/storyboards``, and the MCP server's tools), and the cost arithmetic of
:mod:`kinema.service.usage`.

A key's budget (``kinema keys create --budget 10USD``) is in USD. Once the owner's USD total reaches it, a new job on
a paid (remote) backend is refused; free backends (``builtin``, ``diffusers``) never are. An owner without a budget
(the MCP server's ``local``, unless a key of that id has one) is never refused.

>>> parse_budget("10USD"), parse_budget("$2.50"), parse_budget("7 usd")
((10.0, 'USD'), (2.5, 'USD'), (7.0, 'USD'))
>>> sum_costs([{"usd": 0.5, "credits": 10}, None, {"usd": 0.25, "estimate": True, "price_date": "2026-11-21"}])
{'usd': 0.75, 'credits': 10.0, 'estimate': True}
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from .stores import Store

__all__ = ["parse_budget", "is_paid_backend", "job_cost", "spent_usd", "sum_costs", "budget_refusal", "NOT_AMOUNTS"]

#: cost keys that describe a figure rather than being one
NOT_AMOUNTS = frozenset({"estimate", "price_date", "price_source", "currency"})
_BUDGET = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]{3})?\s*$")
#: a key's budget is read at most this often per process (the check runs on every paid submit)
_BUDGET_CACHE_SECONDS = 2.0


def parse_budget(text: str) -> tuple[float, str]:
    """(amount, "USD") from ``10USD``, ``10 usd``, ``$10`` or ``10``; InvalidRequest naming ``budget`` else."""
    m = _BUDGET.match(text or "")
    currency = (m.group(2) or "USD").upper() if m else ""
    if not m or currency != "USD":
        raise InvalidRequest(
            "budget",
            f"{text!r} is not an amount of US dollars",
            value=text,
            allowed="an amount in USD, e.g. 10USD, 2.50 USD or $10",
        )
    amount = float(m.group(1))
    if not math.isfinite(amount) or amount <= 0:
        raise InvalidRequest("budget", f"{text!r} must be more than 0", value=text, allowed="e.g. 10USD")
    return amount, currency


def is_paid_backend(name: str) -> bool:
    """Whether a backend bills per generation (a cloud provider's remote loop); builtin and diffusers are free."""
    from ..backends import get_backend
    from ..backends.remote import RemoteBackend

    try:
        return isinstance(get_backend(name), RemoteBackend)
    except Exception:  # an unknown backend was already refused by the plan; never block on it here
        return False


def job_cost(result: dict[str, Any] | None) -> dict[str, Any]:
    cost = (result or {}).get("cost")
    return cost if isinstance(cost, dict) else {}


def _amount(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def spent_usd(rows: list[dict[str, Any]]) -> float:
    """The USD total (reported or estimated) of these jobs (rows of :meth:`Store.usage_rows`)."""
    total = 0.0
    for row in rows:
        usd = _amount(job_cost(row.get("result")).get("usd"))
        if usd is not None:
            total += usd
    return round(total, 6)


def sum_costs(costs: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One cost for several generations (a storyboard's scenes): each unit's amounts summed, ``estimate`` when any
    part is one; None when no part has a cost."""
    total: dict[str, float] = {}
    estimate = False
    for cost in costs:
        if not isinstance(cost, dict):
            continue
        estimate = estimate or bool(cost.get("estimate"))
        for unit, value in cost.items():
            amount = _amount(value)
            if unit not in NOT_AMOUNTS and amount is not None:
                total[unit] = round(total.get(unit, 0.0) + amount, 6)
    if not total:
        return None
    return {**total, "estimate": True} if estimate else dict(total)


class _BudgetCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, tuple[float, str] | None]] = {}

    def budget(self, store: Store, owner: str) -> tuple[float, str] | None:
        now = time.monotonic()
        with self.lock:
            hit = self.entries.get(owner)
        if hit is not None and now - hit[0] < _BUDGET_CACHE_SECONDS:
            return hit[1]
        found = store.key_budget(owner)
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[owner] = (now, found)
        return found


_budgets = _BudgetCache()


def budget_refusal(store: Store, owner: str, backend: str, who: str = "this API key") -> str | None:
    """Why a new job of ``owner`` (``who``, in the message) on ``backend`` is refused (its budget is spent and the
    backend is paid), or None when it may run. Every front door calls this before storing a job."""
    budget = _budgets.budget(store, owner)
    if budget is None or not is_paid_backend(backend):
        return None
    amount, currency = budget
    spent = spent_usd(store.usage_rows(owner))
    if spent < amount:
        return None
    return (
        f"budget exhausted: {who} has spent {spent:.2f} {currency} of its {amount:.2f} {currency} budget; "
        f"paid backends ({backend}) are refused, free ones (builtin, diffusers) still run"
    )
