"""Request bodies read with a hard size limit (Hypercorn has none; RELIABILITY S6).

A declared Content-Length over the limit is refused before reading; a chunked body is counted
while it streams and refused as soon as it passes the limit, so the excess is never buffered.

A request with both Content-Length and Transfer-Encoding never gets here: gateway.ingress.framing
refuses it on every route.
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.problems import InvalidRequest, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number", field="content-length")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body exceeds server.maxBodySize ({limit} bytes); split the batch or raise the "
        "limit",
        limit=limit,
    )
