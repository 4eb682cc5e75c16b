"""Kinema's job service: a durable queue of generations behind an OpenAI-style ``/v1/videos`` HTTP API.

``kinema serve`` runs it; :func:`kinema.service.app.create_app` builds the app for embedding or tests. The modules:

* wiring: ``app`` (``create_app``: state, middlewares, error handlers, routers), ``config`` (settings), ``state``
  (what every route of one app shares);
* routes (one ``APIRouter`` factory each): ``videos`` (``/v1/videos``; the submit itself is ``submit``),
  ``storyboards``, ``prompt_routes``, ``models``, ``health``; ``fastpath`` answers the two hottest video routes
  before routing;
* what the routes share: ``auth`` (API keys, rate limits), ``admission`` (queue and per-key limits), ``errors``
  (the API's error answers), ``jsonio`` (JSON bodies in and out), ``openapi`` (request bodies in /openapi.json),
  ``schemas`` (the API's shapes), ``security`` (rate limiters, body limits, image checks);
* jobs: ``store`` (SQLite jobs, leases, idempotency keys, API keys, webhook outbox), ``worker`` (claim, run,
  publish), ``job_kinds`` (the kinds a worker is given), ``video_job`` and ``storyboard_job`` (the two kinds),
  ``webhooks`` (Standard Webhooks signing and delivery), ``safefetch`` (the SSRF-safe HTTP client).

Importing this package needs the ``server`` extra.
"""
