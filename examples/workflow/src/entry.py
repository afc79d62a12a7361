"""An order, fulfilled by a Workflow: reserve stock, wait for payment (an event), ship.

    POST /orders {"item": "mug", "qty": 2}   -> {"id": ...}       (starts a workflow instance)
    POST /orders/<id>/pay {"amount": 20}     -> the payment event the instance waits for
    GET  /orders/<id>                        -> the instance's status()
    POST /orders/<id>/cancel                 -> terminate()

Each step's result is stored: if `flarelet dev` stops while an order waits for its payment, the
order carries on from there when it starts again.
"""

from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint
from workers.workflows import NonRetryableError

PRICES = {"mug": 10, "shirt": 25}


class FulfilOrder(WorkflowEntrypoint):
    async def run(self, event, step):
        order = event.payload

        # a step's name defaults to its function's; a parameter named after an earlier step gets its result
        @step.do(config={"retries": {"limit": 3, "delay": "5 seconds", "backoff": "linear"}})
        async def reserve():
            if order["item"] not in PRICES:
                raise NonRetryableError(f"we do not sell {order['item']}")
            left = int(await self.env.STOCK.get(order["item"]) or 100)
            if left < order["qty"]:
                raise NonRetryableError(f"only {left} {order['item']} left")
            await self.env.STOCK.put(order["item"], str(left - order["qty"]))
            return {"price": PRICES[order["item"]] * order["qty"]}

        @step.do()
        async def ship(reserve):
            return {"shipped": order["qty"], "charged": reserve["price"]}

        reservation = await reserve()
        payment = await step.wait_for_event("wait for payment", "payment", timeout="1 hour")
        if payment["payload"]["amount"] < reservation["price"]:
            return {"refunded": payment["payload"]["amount"], "reason": "underpaid"}
        await step.sleep("packing", "2 hours")
        return await ship()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = [p for p in urlparse(request.url).path.split("/") if p]
        if parts == ["orders"] and request.method == "POST":
            instance = await self.env.ORDERS.create(params=await request.json())
            return Response.json({"id": instance.id}, status=201)
        if len(parts) >= 2 and parts[0] == "orders":
            instance = await self.env.ORDERS.get(parts[1])
            action = parts[2] if len(parts) > 2 else None
            if action == "pay" and request.method == "POST":
                await instance.send_event(type="payment", payload=await request.json())
                return Response.json({"sent": True}, status=202)
            if action == "cancel" and request.method == "POST":
                await instance.terminate()
                return Response.json({"cancelled": True})
            if action is None:
                return Response.json(await instance.status())
        return Response("POST /orders, GET /orders/<id>, POST /orders/<id>/pay or /cancel", status=404)
