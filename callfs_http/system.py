"""``/health``, ``/ready`` and ``/metrics`` (api.md §2.1–2.3)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from callfs_http.common import json_response, services

__all__ = ["health_endpoint", "metrics_endpoint", "ready_endpoint"]


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
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
