from workers import Response, WorkerEntrypoint

SAMPLE = "async function f(id: number): Promise<User> {\n  return await load(id);\n}"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        result = await self.env.PYTHON_RPC.highlight_code(SAMPLE, "typescript")
        page = f"<style>{result['css']}</style><h1>{result['language']}</h1>{result['html']}"
        return Response(page, headers={"content-type": "text/html"})
