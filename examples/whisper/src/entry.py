"""Cloudflare's Workers AI Whisper example, as a Python Worker.

GET / fetches an audio file, sends its bytes to ``@cf/openai/whisper`` as ``{"audio": [0..255, ...]}``
and returns ``{"input": {"audio": []}, "response": <the model output>}`` -- the docs example line by
line. The audio comes from this worker's own origin (``public/enrollment_audio_katie.wav``) unless
the ``AUDIO_URL`` var names another file (the docs fetch it from GitHub).

?model=@cf/openai/whisper-tiny-en picks another Whisper model.
"""

from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, fetch

SAMPLE = "/enrollment_audio_katie.wav"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        audio_url = getattr(self.env, "AUDIO_URL", None) or f"{url.scheme}://{url.netloc}{SAMPLE}"
        model = parse_qs(url.query).get("model", ["@cf/openai/whisper"])[0]

        res = await fetch(audio_url)
        if not res.ok:
            return Response(f"could not fetch {audio_url}: HTTP {res.status}", status=502)
        blob = await res.bytes()

        response = await self.env.AI.run(model, {"audio": list(blob)})

        return Response.json({"input": {"audio": []}, "response": response})
