from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        instance = await self.env.REMOTE_ORDER.create(params={"qty": 4})
        return Response(instance.id)
