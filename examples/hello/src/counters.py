"""In-memory counters shared by the worker's handlers (a sibling module, imported as `counters`)."""

import asyncio


class Counters:
    def __init__(self):
        self.visits = 0
        self.last_visitor = None
        self.ticks = 0
        self.last_cron = None

    async def record_visit(self, who):
        await asyncio.sleep(0.05)  # stands in for slow work: a log shipper, an analytics call
        self.visits += 1
        self.last_visitor = who

    def tick(self, cron):
        self.ticks += 1
        self.last_cron = cron


counters = Counters()
