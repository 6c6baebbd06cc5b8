"""Operations declared once, serving two ends: the Starlette routes and `/openapi.json`.

Each `Operation` names its method, path, handler, summary, request type and response types; the
router and the OpenAPI 3.1 document are both derived from the same list, and JSON Schemas come
from the msgspec types the handlers validate with.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.api_models import PRETRY_IDENTIFIER, Problem
from gateway.config.settings import MAX_NAME, NAME_PATTERN

Handler = Callable[[Request], Awaitable[Response]]
PROBLEM = "application/problem+json"
_PATH_PARAM = re.compile(r"{([a-z]+)}")
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN}
# What each path parameter may be (the handlers' own checks: a name outside it is a 400 to a
# PUT, a 404 to the rest).
PATH_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "name": _NAME,
    "topic": _NAME,
    "identifier": {"type": "string", "minLength": 1, "maxLength": 80, "pattern": PRETRY_IDENTIFIER},
}


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    integer: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    request: Any = None  # a msgspec type, or a dict of media type -> JSON Schema
    responses: Mapping[int, Any] = field(default_factory=dict)  # status -> type or None
    problems: tuple[int, ...] = (400,)
    query: tuple[Query, ...] = ()
    tag: str = "admin"
    request_required: bool = True


def routes(operations: Iterable[Operation]) -> list[Route]:
    return [Route(op.path, op.handler, methods=[op.method]) for op in operations]


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    operations = list(operations)
    types = _types(operations)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "ce-gateway", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }
    return _rename_raw(spec)


def _types(operations: list[Operation]) -> list[Any]:
    found: list[Any] = [Problem]
    for op in operations:
        candidates = [op.request, *op.responses.values()]
        for candidate in candidates:
            if candidate is not None and not isinstance(candidate, dict) and candidate not in found:
                found.append(candidate)
    return found


def _operation(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}{_camel(op.path)}",
        "tags": [op.tag],
        "responses": _responses(op, refs),
    }
    parameters = [_path_parameter(name) for name in _PATH_PARAM.findall(op.path)]
    parameters += [_query_parameter(query) for query in op.query]
    if parameters:
        spec["parameters"] = parameters
    if op.request is not None:
        content = (
            op.request
            if isinstance(op.request, dict)
            else {"application/json": {"schema": refs[op.request]}}
        )
        spec["requestBody"] = {"required": op.request_required, "content": content}
    return spec


def _responses(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in op.responses.items():
        answer: dict[str, Any] = {"description": _reason(status)}
        if body is not None:
            answer["content"] = {"application/json": {"schema": refs[body]}}
        responses[str(status)] = answer
    for status in op.problems:
        responses[str(status)] = {
            "description": _reason(status),
            "content": {PROBLEM: {"schema": refs[Problem]}},
        }
    return responses


def _path_parameter(name: str) -> dict[str, Any]:
    schema = dict(PATH_SCHEMAS.get(name, {"type": "string"}))
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameter(query: Query) -> dict[str, Any]:
    schema = (
        {"type": "integer", "minimum": 1, "maximum": 1000} if query.integer else {"type": "string"}
    )
    return {
        "name": query.name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": query.description,
    }


def _camel(path: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", path)
    return "".join(word[:1].upper() + word[1:] for word in words if word)


def _reason(status: int) -> str:
    reasons = {
        200: "OK",
        201: "Created",
        202: "Accepted",
        204: "No Content",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        413: "Content Too Large",
        415: "Unsupported Media Type",
        503: "Service Unavailable",
        507: "Insufficient Storage",
    }
    return reasons.get(status, str(status))


def _rename_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """`RawSubscription` is the config shape's class name; users see `SubscriptionSpec`."""
    text = orjson.dumps(spec).decode()
    text = re.sub(r'"Raw([A-Z][A-Za-z]*)"', r'"\1Spec"', text)
    text = re.sub(r"schemas/Raw([A-Z][A-Za-z]*)", r"schemas/\1Spec", text)
    result: dict[str, Any] = orjson.loads(text)
    return result


def openapi_operation(operations: Callable[[], Iterable[Operation]]) -> Operation:
    cached: dict[str, bytes] = {}

    async def serve(request: Request) -> Response:
        if "doc" not in cached:
            cached["doc"] = orjson.dumps(document(operations()))
        return Response(cached["doc"], media_type="application/json")

    return Operation(
        "GET",
        "/openapi.json",
        serve,
        "This OpenAPI document",
        responses={200: None},
        problems=(),
        tag="meta",
    )
