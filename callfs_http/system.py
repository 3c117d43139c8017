"""``/health``, ``/ready``, ``/metrics`` and ``/openapi.json`` (api.md §2.1–2.4)."""

from __future__ import annotations

import functools
from importlib import resources

import yaml
from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import Response

from callfs_adapters.metrics import EXPOSITION_CONTENT_TYPE
from callfs_http.common import json_response, services
from callfs_http.representation import dumps

__all__ = [
    "health_endpoint",
    "metrics_endpoint",
    "openapi_document",
    "openapi_endpoint",
    "ready_endpoint",
]


@functools.cache
def openapi_document(version: str) -> bytes:
    """The OpenAPI 3.1 description of the API (``openapi.yaml`` beside this module)."""
    text = resources.files("callfs_http").joinpath("openapi.yaml").read_text("utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = version
    return dumps(document)


async def openapi_endpoint(request: Request) -> Response:
    body = openapi_document(services(request).settings.version)
    return Response(body, headers={"Content-Type": "application/json"})


async def health_endpoint(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready_endpoint(request: Request) -> Response:
    checks = await services(request).engine.check_health()
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    response = json_response(body, 200 if ready else 503)
    response.headers["Cache-Control"] = "no-store"
    return response


async def metrics_endpoint(request: Request) -> Response:
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), headers={"Content-Type": EXPOSITION_CONTENT_TYPE})
