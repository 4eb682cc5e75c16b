"""The request bodies the routes read raw, declared in ``/openapi.json``.

The create routes read their body themselves (to answer every error in the API's shape, and to take multipart forms)
rather than as a pydantic parameter, so FastAPI does not know their models: the routes refer to them by
``$ref: #/components/schemas/<Model>``, and :func:`add_body_schemas` puts them there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

__all__ = ["add_body_schemas"]


def add_body_schemas(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Add ``models`` (and the models they use) to the app's OpenAPI components."""
    models = tuple(models)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()  # FastAPI caches the document: the models are added once
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            if model.__name__ not in components:
                defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in defs.pop("$defs", {}).items():
                    components.setdefault(name, sub)
                components[model.__name__] = defs
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
