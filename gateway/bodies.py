"""Request bodies read with a hard size limit (Hypercorn has none; RELIABILITY S6).

A declared Content-Length over the limit is refused before reading; a chunked body is counted
while it streams and refused as soon as it passes the limit, so the excess is never buffered.
A body that stops before its end (the client went away, or the server dropped it after
`readTimeout` of silence) is a 400 like any incomplete request, not a server error.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

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
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequest(
            f"the request body ended after {size} bytes, before it was complete (the client "
            "disconnected, or sent nothing for server.readTimeout)",
            field="body",
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body exceeds server.maxBodySize ({limit} bytes); split the batch or raise the "
        "limit",
        limit=limit,
    )
