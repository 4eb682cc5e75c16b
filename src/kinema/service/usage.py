"""What each API key has spent: ``GET /v1/usage``, and the per-key budget that refuses new paid jobs (HTTP 402).

Costs are the ``cost`` of each finished job's result, as its backend reported it (Runway credits, Kling units, fal
and Replicate compute seconds...) plus the USD estimate :mod:`kinema.backends.prices` adds where a provider names no
money (``estimate: true``). Totals are per unit; ``estimated`` says whether any USD figure in them is an estimate.

A key's budget (``kinema keys create --budget 10USD``) is in USD, the one currency every paid backend's cost is
reported or estimated in. Once the key's USD total reaches it, a new job on a paid (remote) backend is refused with
402 ``budget_exhausted``; free backends (``builtin``, ``diffusers``) are never refused. Jobs already queued or
running are not stopped, so a burst of submits may overshoot the budget by what they cost.

>>> parse_budget("10USD"), parse_budget("$2.50"), parse_budget("7 usd")
((10.0, 'USD'), (2.5, 'USD'), (7.0, 'USD'))
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from .auth import check_rate, owner_dependency
from .budgets import NOT_AMOUNTS, budget_refusal, is_paid_backend, job_cost, parse_budget, spent_usd, sum_costs
from .errors import ERROR_RESPONSES, ApiError, check_query
from .schemas import Usage

if TYPE_CHECKING:
    from .state import ServiceState

# parse_budget, spent_usd, is_paid_backend and sum_costs live in budgets.py (no HTTP there: the MCP server uses them)
__all__ = ["parse_budget", "summarize", "spent_usd", "sum_costs", "check_budget", "is_paid_backend", "usage_routes"]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of :meth:`Store.usage_rows`: jobs by status, seconds of video made, cost per unit."""
    jobs: dict[str, int] = {}
    seconds = 0.0
    cost: dict[str, dict[str, Any]] = {}
    for row in rows:
        jobs[row["status"]] = jobs.get(row["status"], 0) + 1
        result = row.get("result") or {}
        recipe = result.get("recipe") if isinstance(result, dict) else None
        duration = recipe.get("duration") if isinstance(recipe, dict) else None
        if row["status"] == "completed" and isinstance(duration, int | float):
            seconds += float(duration)
        this = job_cost(result)
        for unit, amount in this.items():
            if unit in NOT_AMOUNTS or isinstance(amount, bool) or not isinstance(amount, int | float):
                continue
            entry = cost.setdefault(unit, {"amount": 0.0, "estimated": False})
            entry["amount"] = round(entry["amount"] + float(amount), 6)
            if unit == "usd" and this.get("estimate"):
                entry["estimated"] = True
    return {
        "jobs": {"total": len(rows), **jobs},
        "seconds": round(seconds, 3),
        "cost": cost,
        "estimated": any(e["estimated"] for e in cost.values()),
    }


def check_budget(state: ServiceState, owner: str, backend: str) -> None:
    """402 ``budget_exhausted`` when ``owner`` has a budget, ``backend`` is paid and the budget is spent."""
    refusal = budget_refusal(state.store, owner, backend)
    if refusal is not None:
        raise ApiError(402, refusal, code="budget_exhausted", param="model")


def _since(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return number
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            f"since: {value!r} is not a time; allowed: unix seconds (1767225600) or an ISO 8601 "
            f"date or time (2026-12-01, 2026-12-01T09:00:00Z)",
            param="since",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def usage_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["usage"])
    owner_of = owner_dependency(state)

    @router.get(
        "/v1/usage",
        response_model=Usage,
        responses=ERROR_RESPONSES,
        summary="Your API key's jobs, seconds of video and costs",
    )
    def usage(
        request: Request,
        owner: str = Depends(owner_of),
        since: str | None = Query(None, max_length=64, description="unix seconds or an ISO 8601 date/time"),
    ) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        check_query(request.query_params, "GET /v1/usage", ("since",))
        start = _since(since)
        totals = summarize(state.store.usage_rows(owner, start))
        budget = state.store.key_budget(owner)
        budget_info = None
        if budget is not None:
            spent = (
                spent_usd(state.store.usage_rows(owner)) if start else totals["cost"].get("usd", {}).get("amount", 0.0)
            )
            budget_info = {
                "amount": budget[0],
                "currency": budget[1],
                "spent": spent,
                "remaining": round(max(0.0, budget[0] - spent), 6),
            }
        return {"object": "usage", "key_id": owner, "since": start, **totals, "budget": budget_info}

    return router
