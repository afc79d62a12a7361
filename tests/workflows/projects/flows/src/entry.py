"""Workflows exercised by tests/workflows (one behaviour per class)."""

import asyncio

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint
from workers.workflows import NonRetryableError

#: instance id -> how many times each step body ran (tests read it through the module)
RUNS = {}
#: instance id -> asyncio.Event a gated step waits for
GATES = {}


def ran(instance_id, name):
    counts = RUNS.setdefault(instance_id, {})
    counts[name] = counts.get(name, 0) + 1


class OrderFlow(WorkflowEntrypoint):
    async def run(self, event, step):
        me = event["instanceId"]

        @step.do("price")
        async def price():
            ran(me, "price")
            return {"total": event.payload["qty"] * 3, "lines": [1, 2]}

        first = await price()
        await step.sleep("cool off", "1 hour")

        @step.do()
        async def approval_note(ctx):
            ran(me, "approval_note")
            return f"attempt {ctx.attempt}"

        note = await approval_note()
        approval = await step.wait_for_event("wait approval", "approved", timeout="1 day")
        return {"total": first["total"], "note": note, "approver": approval["payload"]["by"], "type": approval["type"]}


class FlakyFlow(WorkflowEntrypoint):
    async def run(self, event, step):
        me = event["instanceId"]
        mode = event.payload.get("mode")
        times = []

        config = {
            "retries": {"limit": 3, "delay": "10 seconds", "backoff": event.payload.get("backoff", "exponential")}
        }

        @step.do("unsteady", config=config)
        async def unsteady(ctx):
            ran(me, "unsteady")
            times.append(ctx.attempt)
            if mode == "fatal":
                raise NonRetryableError("stop now")
            if ctx.attempt < event.payload.get("succeed_on", 99):
                raise ValueError(f"attempt {ctx.attempt} failed")
            return ctx.attempt

        try:
            return {"attempt": await unsteady()}
        except NonRetryableError as exc:
            return {"caught": str(exc), "runs": RUNS[me]["unsteady"]}


class GatedFlow(WorkflowEntrypoint):
    async def run(self, event, step):
        me = event["instanceId"]

        @step.do("one")
        async def one():
            ran(me, "one")
            await GATES[me].wait()
            return 1

        @step.do("two")
        async def two(one):
            ran(me, "two")
            return one + 1

        await one()
        await step.sleep("pause here", "5 minutes")
        return await two()


class Point:
    pass


class MiscFlow(WorkflowEntrypoint):
    async def run(self, event, step):
        kind = event.payload["kind"]
        if kind == "unserialisable":

            @step.do("bad")
            async def bad():
                return Point()

            try:
                await bad()
            except Exception:  # not even this keeps the instance alive, as on Cloudflare
                return "caught"
        if kind == "too_many_steps":
            for i in range(5):
                await step.do(f"s{i}", lambda ctx, i=i: i)
            return "unreachable"
        if kind == "js_style":
            a = await step.do("a", lambda ctx: 20)
            b = await step.do("b", {"retries": {"limit": 0, "delay": 0}}, lambda ctx: a + 1)
            return a + b
        if kind == "dag":

            @step.do()
            async def left():
                return "L"

            @step.do()
            async def right():
                return "R"

            @step.do(concurrent=True)
            async def both(left, right, ctx):
                return left + right + str(ctx.attempt)

            return await both()
        if kind == "timeout":

            @step.do("slow", config={"retries": {"limit": 0, "delay": 0}, "timeout": 200})
            async def slow():
                await asyncio.sleep(30)

            await slow()
        if kind == "bad_config":
            await step.do("x", {"retries": {"limit": 1}}, lambda ctx: 1)
        if kind == "gated_fail":
            me = event["instanceId"]

            @step.do("fails", config={"retries": {"limit": 1, "delay": "10 seconds"}})
            async def fails():
                ran(me, "fails")
                await GATES[me].wait()
                raise ValueError("still failing")

            await fails()
        if kind == "raise":
            raise RuntimeError("run failed")
        if kind == "sleep_until_past":
            await step.sleep_until("past", 1000)
        return kind


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        instance = await self.env.ORDER.create(params={"qty": 2})
        return Response(instance.id)
