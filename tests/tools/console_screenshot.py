"""Draw docs/console-overview.png: the console's overview after an hour of traffic, with
`billing` failing since 20 minutes ago (its subscriber answers 503, so events dead-letter) and
`audit` healthy. A real gateway and real subscribers on 127.0.0.1; the hour passes on a
ManualClock, a minute at a time, so it takes seconds.

    python -m tests.tools.console_screenshot [OUT]   # default docs/console-overview.png
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from gateway.clock import ManualClock
from tests.conftest import LOOPBACK_EGRESS, make_settings, run_gateway, settle, subscription
from tests.support.subscriber import Answer, run_subscriber

MINUTES = 60
FAILING_FROM = 40


async def main(out: Path) -> None:
    clock = ManualClock()
    failing = False
    async with run_subscriber() as billing, run_subscriber() as audit:
        billing.script = lambda request: Answer(503 if failing else 200, body=b"maintenance")
        policy = {"retryPolicy": {"minimumBackoff": "0s", "maximumBackoff": "0s"}}
        config = {
            "egress": LOOPBACK_EGRESS,
            "topics": [{"name": "orders", "retention": "24h"}, {"name": "orders-dead"}],
            "subscriptions": [
                subscription(
                    "billing",
                    billing.url,
                    maxDeliveryAttempts=3,
                    deadLetterTopic="orders-dead",
                    **policy,
                ),
                subscription("audit", audit.url, **policy),
            ],
        }
        with tempfile.TemporaryDirectory() as data:
            async with run_gateway(make_settings(Path(data), **config), clock=clock) as gw:
                for minute in range(MINUTES):
                    failing = minute >= FAILING_FROM
                    for n in range(3 + minute % 5):
                        await gw.publish("orders", f"order-{minute}-{n}")
                    await settle(gw)
                    await gw.client.get("/console/live")  # the console reads the counters
                    clock.advance(60)
                await shoot(gw.url, out)


async def shoot(url: str, out: Path) -> None:
    args = ["--headless=new", "--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = await browser.new_page(viewport={"width": 1280, "height": 640})
        await page.goto(url + "/console")
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console-overview.png")))
