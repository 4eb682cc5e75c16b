"""Local fake servers of the commercial video APIs, faithful to shared/reference/provider-apis.md.

Each fake is a real HTTP server (standard library, a thread, 127.0.0.1, port 0) that speaks its provider's wire
protocol, so the official SDKs are pointed at it through their base-URL settings and exercised for real. See
``base.FakeServer`` for the knobs every fake shares (outcomes, 429s, 5xx, slow answers, expiring URLs, counters).
"""
