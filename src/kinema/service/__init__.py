"""Kinema's job service: a durable queue of generations behind an OpenAI-style ``/v1/videos`` HTTP API.

``kinema serve`` runs it; :func:`kinema.service.app.create_app` builds the app for embedding or tests. The
modules: ``config`` (settings), ``store`` (SQLite jobs, leases, idempotency keys, API keys, webhook outbox),
``worker`` (claim, run through the engine, publish), ``webhooks`` (Standard Webhooks signing and delivery),
``safefetch`` (the SSRF-safe HTTP client), ``security`` (keys, rate limits, body limits, image checks),
``schemas`` (the API's shapes) and ``app`` (the routes). Importing this package needs the ``server`` extra.
"""
