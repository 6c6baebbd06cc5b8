"""Configuration changes while events stream in: fan-out sees each change whole and in commit
order (found by review: a delete left orphan deliveries; a re-put made publishes miss)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import LOOPBACK_EGRESS, make_settings, run_gateway, settle, status, subscription
from tests.support.subscriber import run_subscriber


async def test_deleting_a_subscription_under_load_leaves_no_orphan_deliveries(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, subscriptions=[subscription("doomed", "https://hooks.example.com/never")]
    )
    async with run_gateway(settings) as gw:
        lane = gw.gateway.engine.lanes["doomed"]  # type: ignore[union-attr]
        lane.stop_taking()  # keep its deliveries pending: the delete must drop them all

        async def publish(index: int) -> int:
            return (await gw.publish("orders", f"e{index}")).status_code

        publishing = [asyncio.create_task(publish(index)) for index in range(400)]
        await asyncio.sleep(0.01)
        deleted = await gw.client.delete("/v1/subscriptions/doomed?force=true")
        assert deleted.status_code == 204
        assert set(await asyncio.gather(*publishing)) == {202}
        assert gw.store.deliveries.pending("doomed") == 0
        assert status(gw, "doomed")["published"] == 0


async def test_re_putting_a_subscription_under_load_misses_no_event(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        spec = subscription("s1", sub.url)
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            body = {key: value for key, value in spec.items() if key != "name"}

            async def publish(index: int) -> int:
                return (await gw.publish("orders", f"e{index}")).status_code

            async def re_put(times: int) -> None:
                for _ in range(times):
                    response = await gw.client.put("/v1/subscriptions/s1", json=body)
                    assert response.status_code == 200

            results = await asyncio.gather(re_put(30), *(publish(i) for i in range(300)))
            assert set(results[1:]) == {202}
            await settle(gw)
            assert len({r.event_id for r in sub.received}) == 300
            assert status(gw, "s1")["published"] == 300
