"""Tests for the order workflow, in process, on a clock the tests move (no real waiting).

`clock=ManualClock` gives the worker's Workflows a clock that only moves when told:
`worker.run_workflow(binding, id)` runs an instance to its end, jumping over its sleeps, and
`worker.advance_time(seconds)` moves time by hand. Run with `python -m pytest examples/workflow`.
"""

import pytest

from flarelet.bindings.workflows.clock import ManualClock

pytestmark = pytest.mark.flarelet(clock=ManualClock)


async def order(worker, **body):
    resp = await worker.fetch("/orders", method="POST", json=body)
    assert resp.status == 201
    return (await resp.json())["id"]


async def test_a_paid_order_ships_after_packing(worker):
    order_id = await order(worker, item="mug", qty=2)
    await worker.fetch(f"/orders/{order_id}/pay", method="POST", json={"amount": 20})
    status = await worker.run_workflow("ORDERS", order_id)
    assert status["status"] == "complete"
    assert status["output"] == {"shipped": 2, "charged": 20}
    assert await worker.env.STOCK.get("mug") == "98"


async def test_the_order_waits_for_its_payment(worker):
    order_id = await order(worker, item="shirt", qty=1)
    await worker.advance_time(59 * 60)
    status = await (await worker.fetch(f"/orders/{order_id}")).json()
    assert status["status"] == "waiting"
    await worker.fetch(f"/orders/{order_id}/pay", method="POST", json={"amount": 25})
    assert (await worker.run_workflow("ORDERS", order_id))["output"]["charged"] == 25


async def test_an_unpaid_order_times_out_after_an_hour(worker):
    order_id = await order(worker, item="mug", qty=1)
    status = await worker.run_workflow("ORDERS", order_id)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "WorkflowTimeoutError"


async def test_an_unknown_item_fails_without_retries(worker):
    order_id = await order(worker, item="kite", qty=1)
    status = await worker.run_workflow("ORDERS", order_id)
    assert status["error"] == {"name": "NonRetryableError", "message": "we do not sell kite"}


async def test_a_cancelled_order_is_terminated(worker):
    order_id = await order(worker, item="mug", qty=1)
    await worker.fetch(f"/orders/{order_id}/cancel", method="POST")
    assert (await (await worker.fetch(f"/orders/{order_id}")).json())["status"] == "terminated"
