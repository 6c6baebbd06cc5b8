"""The bench subscriber: answers every POST with 200 at once and remembers when each arrived.

A bare ASGI callable served by uvicorn with httptools (and uvloop when installed), in its own
process, so it is not the bottleneck of what it measures (`bench/run.py` measures it alone with
wrk and reports that rate beside the push figures).

    python bench/sink.py --port 9000

Control, by GET (never counted as arrivals):
  /stats               {"count": n, "first": t, "last": t}  (times: CLOCK_MONOTONIC seconds,
                       comparable with time.monotonic() in other processes of this machine)
  /times?start=a&stop=b  the arrival times of arrivals a..b-1, in order
  /ids?prefix=p        {ce-id: arrival time} for the ids starting with p (ids are kept only for
                       prefixes named with /track)
  /track?prefix=p      start keeping ids that start with p
  /reset               forget everything
"""

from __future__ import annotations

import argparse
import time
from array import array
from typing import Any
from urllib.parse import parse_qs

import orjson

Scope = dict[str, Any]

_OK_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_OK_BODY = {"type": "http.response.body", "body": b""}


class Arrivals:
    def __init__(self) -> None:
        self.times = array("d")
        self.tracked: tuple[bytes, ...] = ()
        self.ids: dict[str, float] = {}

    def reset(self) -> None:
        self.times = array("d")
        self.tracked = ()
        self.ids = {}

    def arrived(self, headers: list[tuple[bytes, bytes]]) -> None:
        now = time.monotonic()
        self.times.append(now)
        if self.tracked:
            for name, value in headers:
                if name == b"ce-id":
                    if value.startswith(self.tracked):
                        self.ids[value.decode()] = now
                    break

    def control(self, path: str, query: dict[str, list[str]]) -> Any:
        if path == "/stats":
            times = self.times
            return {
                "count": len(times),
                "first": times[0] if times else None,
                "last": times[-1] if times else None,
            }
        if path == "/times":
            start = int(query.get("start", ["0"])[0])
            stop = int(query.get("stop", [str(len(self.times))])[0])
            return list(self.times[start:stop])
        if path == "/ids":
            prefix = query.get("prefix", [""])[0]
            return {key: value for key, value in self.ids.items() if key.startswith(prefix)}
        if path == "/track":
            self.tracked = (*self.tracked, query["prefix"][0].encode())
            return {"tracked": [p.decode() for p in self.tracked]}
        if path == "/reset":
            self.reset()
            return {"reset": True}
        return None


ARRIVALS = Arrivals()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "GET":
        query = parse_qs(scope.get("query_string", b"").decode())
        answer = ARRIVALS.control(scope["path"], query)
        status = 404 if answer is None else 200
        body = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    ARRIVALS.arrived(scope["headers"])
    await send(_OK_START)
    await send(_OK_BODY)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=options.port,
        http="httptools",
        loop=loop,
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )


if __name__ == "__main__":
    main()
