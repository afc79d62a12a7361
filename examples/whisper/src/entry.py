"""Cloudflare's Workers AI Whisper example, as a Python Worker.

GET / fetches an audio file, sends its bytes to ``@cf/openai/whisper`` as ``{"audio": [0..255, ...]}``
and returns ``{"input": {"audio": []}, "response": <the model output>}`` -- the docs example line by
line. The audio is this worker's static asset ``public/enrollment_audio_katie.wav`` (read through the
``ASSETS`` binding: a subrequest to the worker's own URL would go to the zone's origin on Cloudflare,
not to its assets) unless the ``AUDIO_URL`` var names another file (the docs fetch it from GitHub).

?model=@cf/openai/whisper-tiny-en picks another Whisper model.
"""

from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, fetch

SAMPLE = "/enrollment_audio_katie.wav"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        audio_url = getattr(self.env, "AUDIO_URL", None)
        model = parse_qs(url.query).get("model", ["@cf/openai/whisper"])[0]

        if audio_url:
            res = await fetch(audio_url)
        else:
            audio_url = f"{url.scheme}://{url.netloc}{SAMPLE}"
            res = await self.env.ASSETS.fetch(audio_url)
        if not res.ok:
            return Response(f"could not fetch {audio_url}: HTTP {res.status}", status=502)
        blob = await res.bytes()

        response = await self.env.AI.run(model, {"audio": list(blob)})

        return Response.json({"input": {"audio": []}, "response": response})
