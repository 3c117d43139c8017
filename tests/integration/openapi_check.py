"""Checks every response the integration suite receives against ``/openapi.json``.

The clients of ``conftest.Server.client`` call :meth:`ResponseChecker.check`
from an httpx response hook, so each test doubles as a conformance test of
the published OpenAPI document. JSON bodies are validated against their
schemas; other bodies (file content) are not read by the hook, so streaming
tests keep streaming.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_spec_validator import validate
from werkzeug.datastructures import Headers, ImmutableMultiDict

from callfs_http.system import openapi_document

_TEMPLATES = (
    ("/v1/files/", "/v1/files/{path}"),
    ("/v1/directories/", "/v1/directories/{path}"),
    ("/download/", "/download/{token}"),
)


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        url = request.url
        self.host_url = f"{url.scheme}://{url.netloc.decode()}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = None
        self.content_type = request.headers.get("content-type", "")
        # Path parameters may contain "/", which OpenAPI templates cannot match.
        self.path_pattern = next(
            (template for prefix, template in _TEMPLATES if url.path.startswith(prefix)), url.path
        )
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )


class _Response:
    def __init__(self, response: httpx.Response, data: bytes) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))
        self.data = data


@functools.cache
def _openapi() -> OpenAPI:
    document: dict[str, Any] = json.loads(openapi_document("test"))
    validate(document)  # the document itself is valid OpenAPI 3.1
    return OpenAPI.from_dict(document)


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")


def check(response: httpx.Response) -> None:
    """Raise AssertionError when ``response`` does not conform to the document."""
    request = response.request
    json_body = _is_json(response) and request.method != "HEAD"
    # File content is not read here (tests may stream it); binary schemas accept anything.
    data = response.read() if json_body else b"<content not read by the check>"
    try:
        _openapi().validate_response(_Request(request), _Response(response, data))  # type: ignore[arg-type]
    except (PathNotFound, OperationNotFound):
        # Unknown endpoints and methods: the error envelope is all the document promises.
        assert response.status_code in (401, 404, 405), (request.method, request.url, response)
        if json_body:
            assert set(json.loads(data)) == {"code", "message"}
    except Exception as exc:
        raise AssertionError(
            f"{request.method} {request.url.path} -> {response.status_code} does not match "
            f"/openapi.json: {exc!r} {getattr(exc, '__cause__', None)!r}"
        ) from exc


def hooks() -> dict[str, list[Any]]:
    return {"response": [check]}
