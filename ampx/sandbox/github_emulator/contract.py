"""Checks emulator responses against GitHub's OpenAPI document (``github-rest-subset.json``).

Tests register :meth:`ResponseContract.observer` on an emulator; every REST
response is then validated with openapi-core (status, headers, body schema).
Responses the document does not describe for an operation (GitHub answers
401/403/5xx/304 on any endpoint) must still have GitHub's shape: an error
object with a ``message``, or an empty 304. Every response must carry the
rate-limit headers, and every absolute URL in a body must point at the
emulator itself.

openapi-core and jsonschema are test dependencies, imported lazily.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

SPEC_PATH = Path(__file__).resolve().parent.parent / "github-rest-subset.json"
_HOST = "http://emulator.invalid"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used", "x-ratelimit-resource")
#: Operations whose ``{ref}`` may legitimately contain slashes (GitHub accepts
#: ``commits/amp/x/check-runs`` as well as ``commits/amp%2Fx/check-runs``).
_SLASHY = [
    re.compile(r"^(/api/v3/repos/[^/]+/[^/]+/commits/)(.+)(/check-runs)$"),
    re.compile(r"^(/api/v3/repos/[^/]+/[^/]+/git/refs/)(.+)()$"),
]
ERROR_SCHEMA = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "documentation_url": {"type": "string"}, "errors": {"type": "array"}},
}


@lru_cache(maxsize=4)
def _openapi(spec_path: str):
    from openapi_core import OpenAPI

    spec = json.loads(Path(spec_path).read_text())
    spec["servers"] = [{"url": _HOST + "/api/v3"}]
    _allow_null_in_nullable_enums(spec)
    return OpenAPI.from_dict(spec)


def _allow_null_in_nullable_enums(node: Any) -> None:
    """``nullable: true`` + ``enum`` without null: strict OAS 3.0 validators reject
    null there, yet GitHub returns it (e.g. a queued job's ``conclusion``; the
    document's own examples show it). Read such schemas as allowing null."""
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _allow_null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _allow_null_in_nullable_enums(value)


class ResponseContract:
    def __init__(self, spec_path: Path | str = SPEC_PATH) -> None:
        self.spec_path = str(spec_path)
        self.openapi = _openapi(self.spec_path)
        #: How many responses were checked against a documented response.
        self.validated = 0

    def check(
        self, method: str, path: str, status: int, headers: dict[str, str], body: bytes | None, *, base_url: str | None = None
    ) -> list[str]:
        """Violations for one response (empty list if it conforms)."""
        from openapi_core.templating.paths.exceptions import PathNotFound, OperationNotFound
        from openapi_core.templating.responses.exceptions import ResponseNotFound
        from openapi_core.testing import MockRequest, MockResponse

        split = urlsplit(path)
        if not split.path.startswith("/api/v3") or method == "HEAD":
            return []
        where = f"{method} {split.path} -> {status}"
        problems: list[str] = []
        lower = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in RATE_HEADERS if h not in lower]
        if missing:
            problems.append(f"{where}: missing headers {missing}")
        if method == "GET" and status == 200 and "etag" not in lower:
            problems.append(f"{where}: GET 200 without ETag")
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                problems.append(f"{where}: body is not JSON")
        if base_url and data is not None:
            problems += [f"{where}: URL to another host: {u}" for u in _foreign_urls(data, base_url)]
        content_type = (lower.get("content-type") or "application/json").split(";")[0].strip()
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        request = MockRequest(_HOST, method.lower(), _normalise(split.path), args=query)
        response = MockResponse(body or b"", status_code=status, headers=lower, content_type=content_type if body else None)
        try:
            self.openapi.validate_response(request, response)
            self.validated += 1
        except (PathNotFound, OperationNotFound):
            if status != 404 or not _is_error(data):
                problems.append(f"{where}: operation not in the OpenAPI document")
        except ResponseNotFound:
            problems += _undocumented_status(where, status, body, data)
        except Exception as exc:  # openapi-core validation errors
            detail = exc.__cause__ or exc
            problems.append(f"{where}: {type(exc).__name__}: {_short(detail)}")
        return problems

    def observer(self, sink: list[str], *, base_url: str | Callable[[], str] | None = None) -> Callable[..., None]:
        """A ``response_observers`` callable appending violations to ``sink``."""

        def observe(method: str, path: str, status: int, headers: dict[str, str], body: bytes | None) -> None:
            url = base_url() if callable(base_url) else base_url
            try:
                sink.extend(self.check(method, path, status, headers, body, base_url=url))
            except Exception as exc:  # the checker itself must never break serving
                sink.append(f"{method} {path}: contract check crashed: {exc!r}")

        return observe


def _normalise(path: str) -> str:
    for pattern in _SLASHY:
        m = pattern.match(path)
        if m:
            return m.group(1) + quote(m.group(2), safe="%") + m.group(3)
    return path


def _is_error(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    import jsonschema

    return jsonschema.Draft7Validator(ERROR_SCHEMA).is_valid(data)


def _undocumented_status(where: str, status: int, body: bytes | None, data: Any) -> list[str]:
    """GitHub's answers that any endpoint may give, though the document omits them."""
    if status == 304:
        return [] if not body else [f"{where}: 304 with a body"]
    if status >= 400:
        return [] if _is_error(data) else [f"{where}: error body is not GitHub's {{message, documentation_url}} shape"]
    return [f"{where}: status not documented for this operation"]


def _foreign_urls(data: Any, base_url: str) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            if not value.startswith(base_url) and not value.startswith("https://docs.github.com/"):
                found.append(value)

    walk(data)
    return found[:5]


def _short(exc: BaseException) -> str:
    errors = getattr(exc, "schema_errors", None)
    if errors:
        return "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in list(errors)[:5])
    return str(exc)[:500]
