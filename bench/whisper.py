#!/usr/bin/env python3
"""Whisper speed on this CPU: flarelet's engine vs a plain transformers pipeline, faster-whisper and whisper.cpp.

Same weights for all (the CTranslate2 package flarelet converts from; whisper.cpp reads them converted
to ggml f16 by ``scripts/whisper_to_ggml.py``, which is exact), same decoded audio (16 kHz mono
float32, decoded once by the parent), greedy decoding, English. Every engine runs with its own
recommended settings, except that all decode greedily (beam size 1) on ``--threads`` threads:

* ``flarelet``     -- ``flarelet.bindings.ai.asr.inference.transcribe_request`` on the engine the service uses
  (whatever ``[flarelet.ai]`` / ``FLARELET_AI_*`` settings say -- by default int8 weights;
  ``--threads`` overrides), with word timestamps, because Cloudflare's output always carries them;
* ``flarelet-fp16`` -- the same with ``quantize="fp16"`` (fp32 encoder, fp16-stored decoder: exact);
* ``flarelet-transformers`` -- (on request) the same request path on the ``transformers`` backend
  (``engine = "transformers"``: transformers' own model and ``generate``, fp32), side by side;
* ``flarelet-batched`` -- (on request) the defaults with ``long_form = "batched"`` (chunks cut at
  silences, decoded as one batch: :mod:`flarelet.bindings.ai.asr.batched`);
* ``flarelet-eager`` -- (on request) the defaults with the decoder step run eagerly instead of as one
  TorchScript graph: that lever's effect, side by side;
* ``pipeline``     -- ``pipeline("automatic-speech-recognition", model=<converted folder>)``, fp32,
  ``return_timestamps=True``, ``generate_kwargs={"num_beams": 1}`` (greedy; the 5.x pipeline
  would otherwise add beam search from the checkpoint's generation config), sequential long-form;
* ``fw``           -- faster-whisper as its README recommends for the CPU: ``WhisperModel(folder,
  device="cpu", compute_type="int8", cpu_threads=--threads)`` (``num_workers=1``, its default: more
  workers only help concurrent ``transcribe`` calls from several Python threads). ``transcribe`` with
  ``beam_size=1`` (its default is 5; greedy here, as every engine), ``language="en"`` for base, and its
  defaults otherwise: sequential 30 s windows with timestamp tokens (``without_timestamps=False``), no
  VAD (``vad_filter=False``), ``condition_on_previous_text=True``, temperature fallback 0.0-1.0;
* ``fw-words``     -- the same with ``word_timestamps=True`` (like for like with flarelet);
* ``fw-batched``   -- (on request) faster-whisper's ``BatchedInferencePipeline`` with ``batch_size=8``
  (the batch size of its README's CPU benchmark), ``beam_size=1``, its defaults otherwise: the clip cut
  at silences by its Silero VAD (``vad_filter=True``) into chunks of at most 30 s decoded as one batch,
  ``without_timestamps=True``;
* ``whispercpp``   -- whisper.cpp through pywhispercpp (``pip install pywhispercpp==1.5.1``, in the
  ``bench`` extra) on the ggml f16 file converted from the same folder (cached beside it in flarelet's
  models cache): greedy sampling (``params_sampling_strategy=0``), ``n_threads=--threads``,
  ``language="en"``, progress and real-time printing off, whisper.cpp's defaults otherwise
  (``no_context=True``, temperature fallback by 0.2, ``greedy.best_of=5`` for the fallback);
* ``whispercpp-words`` -- (on request) the same with its word-level timestamps: ``token_timestamps=True,
  max_len=1, split_on_word=True`` (whisper.cpp's ``-ml 1 -sow``: one segment per word).

Why one script, one subprocess per engine: each engine runs in its own process so its peak RSS
(``ru_maxrss``) is honest, and the parent drives them *round-robin* -- one transcription at a time,
the other engines idle, the order rotated every round -- so on a busy shared machine every engine
sees the same contention and the ratios hold even when the absolute numbers move. The load
average before and after is printed; trust ratios over absolutes.

Quiet machine: a run counts as on a quiet machine when the 1-minute load average before it is
below 0.5 (``QUIET_LOAD``); the output says ``quiet machine: yes/no (load average X before, threshold
0.5)`` and the JSON result carries ``quiet``. ``--wait-quiet SECONDS`` first waits (polling the load
average) up to that long for the machine to get quiet, and says so if it never did.

Columns: ``load s`` = model construction (after imports), ``latency s`` = median of ``--runs``
timed transcriptions after one warm-up [min-max], ``RTF`` = latency / clip length, ``RSS MB`` = peak
resident memory of that engine's process, ``WER`` = word error rate against the known text
(lowercase, no punctuation, numbers as words), ``x fw`` / ``x fw-words`` / ``x wcpp`` / ``x pipe`` =
flarelet latency divided by that engine's (< 1 means flarelet is faster).

Usage::

    .venv/bin/python bench/whisper.py                       # tiny.en, 1 thread, 5 runs
    .venv/bin/python bench/whisper.py --model base --threads 2 --runs 3
    .venv/bin/python bench/whisper.py --clips c60,sonnet --engines flarelet,fw
    .venv/bin/python bench/whisper.py --clips jfk,sonnet --engines flarelet,fw,fw-words,whispercpp --wait-quiet 600
"""

from __future__ import annotations

import sys

# bench/http.py would shadow the standard library's http package (torch imports http.client).
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = REPO / "tests" / "data" / "audio"

#: espeak-ng texts (``-v en-us -s 150``): about 10 s and 60 s of English with known words.
C10 = (
    "Good morning everyone. Today we will discuss the release plan for version two. "
    "Maria will present the test results, and then we will decide on the launch date."
)
C60 = (
    "Thank you all for joining the weekly planning meeting. "
    "First, the infrastructure team finished moving the database to the new cluster last Thursday. "
    "The migration took four hours longer than expected, because the backup job was still running. "
    "Second, the mobile application passed the security review with two minor findings. "
    "Third, customer support reports that the number of open tickets dropped by twenty percent this month. "
    "Most of the remaining tickets concern the billing page, which is slow on older phones. "
    "Daniel will profile the billing page and report the main bottlenecks on Monday. "
    "Sarah asked whether we should delay the marketing campaign until the billing fix is deployed. "
    "We agreed to keep the campaign date, but to prepare a short notice for affected users. "
    "The budget for the next quarter is unchanged, and hiring for two engineering positions continues. "
    "Please update your calendars, because next week the meeting moves to Wednesday afternoon."
)
#: name -> (source, reference); source "espeak:<text>" or a file in the shared audio folder.
CLIPS: dict[str, tuple[str, str | None]] = {
    "c10": ("espeak", C10),
    "c60": ("espeak", C60),
    "jfk": ("jfk.flac", None),  # 11 s, real speech; reference from the audio manifest
    "sonnet": ("librivox_sonnet001.mp3", None),  # 53 s, real read speech
}
ENGINES = ("flarelet", "flarelet-fp16", "pipeline", "fw", "fw-words", "whispercpp")
#: run on request only: levers that can be switched off for a side-by-side run (``--engines
#: flarelet,flarelet-eager``) and the other engines' variants
EXTRA_ENGINES = ("flarelet-eager", "flarelet-transformers", "flarelet-batched", "fw-batched", "whispercpp-words")
#: engines flarelet's rows are compared with: engine -> column
RATIO_COLUMNS = {"fw": "x fw", "fw-words": "x fw-words", "whispercpp": "x wcpp", "pipeline": "x pipe"}
#: a run is on a quiet machine when the 1-minute load average before it is below this
QUIET_LOAD = 0.5


# -- word error rate ---------------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalize(text: str) -> str:
    """Lowercase, numbers as words, no punctuation, single spaces (what WER is computed on)."""
    t = text.lower().replace("’", "'").replace("%", " percent ")
    t = re.sub(r"\d+", lambda m: " " + _number_words(int(m.group())) + " ", t)
    t = re.sub(r"[-–—]", " ", t)
    t = re.sub(r"[^\w\s']", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    return " ".join(t.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<empty>"))


# -- the engine processes ------------------------------------------------------------------------------


def _rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` where Linux has it, else ``ru_maxrss``.

    Not ``ru_maxrss`` on Linux: it survives ``exec``, so a child started (vfork + exec) by a parent
    holding 360 MB reports at least 360 MB however little it uses itself; ``VmHWM`` is the peak of
    the child's own address space."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _FlareletEngine:
    def __init__(self, model: str, threads: int | None, variant: str | None = None) -> None:
        """``variant``: None (the settings as shipped), ``"fp16"`` (``quantize="fp16"``), ``"eager"``
        (the decoder step without its TorchScript graph, :mod:`flarelet.bindings.ai.asr.token_step`) or
        ``"transformers"`` (``engine="transformers"``)."""
        from flarelet.bindings.ai import catalog
        from flarelet.bindings.ai.asr import engine
        from flarelet.bindings.ai.settings import AiSettings

        settings = AiSettings.from_options({})
        if threads is not None:
            settings = settings.replace(threads=threads)
        if variant == "fp16":
            settings = settings.replace(quantize="fp16")
        if variant == "transformers":
            settings = settings.replace(engine="transformers")
        if variant == "batched":
            settings = settings.replace(long_form="batched")
        self.spec = catalog.resolve("@cf/openai/whisper-tiny-en" if model == "tiny.en" else "@cf/openai/whisper")
        self.engine = engine.get_engine(self.spec, settings)
        self.settings = settings
        if variant == "eager":
            self.engine.lean.plan = None

    def transcribe(self, samples: Any) -> str:
        from flarelet.bindings.ai.asr import inference
        from flarelet.bindings.ai.asr.schemas import AsrRequest

        request = AsrRequest(audio=b"", language="en" if self.spec.id == "@cf/openai/whisper" else None)
        return inference.transcribe_request(self.spec, self.engine, samples, request, None, self.settings.long_form)[
            "text"
        ]


class _PipelineEngine:
    def __init__(self, model: str, threads: int | None) -> None:
        import torch
        import transformers
        from transformers import pipeline

        from flarelet.bindings.ai.asr.weights import ensure_weights
        from flarelet.bindings.ai.settings import AiSettings

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(threads or 1)
        folder = ensure_weights(model, AiSettings.from_options({}).models_dir)
        self.multilingual = model != "tiny.en"
        self.pipe = pipeline("automatic-speech-recognition", model=str(folder), dtype=torch.float32, device="cpu")

    def transcribe(self, samples: Any) -> str:
        kwargs: dict[str, Any] = {"num_beams": 1}
        if self.multilingual:
            kwargs["language"] = "en"
        out = self.pipe({"raw": samples, "sampling_rate": 16000}, return_timestamps=True, generate_kwargs=kwargs)
        return out["text"]


class _FasterWhisperEngine:
    def __init__(self, model: str, threads: int | None, words: bool, batched: bool = False) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.words = words
        self.language = None if model == "tiny.en" else "en"
        self.model = WhisperModel(str(ct2_folder(model)), device="cpu", compute_type="int8", cpu_threads=threads or 1)
        self.batched = BatchedInferencePipeline(model=self.model) if batched else None

    def transcribe(self, samples: Any) -> str:
        if self.batched is not None:
            segments, _info = self.batched.transcribe(
                samples, batch_size=FW_CPU_BATCH_SIZE, beam_size=1, language=self.language
            )
        else:
            segments, _info = self.model.transcribe(
                samples, beam_size=1, word_timestamps=self.words, language=self.language
            )
        return "".join(s.text for s in segments)


#: faster-whisper's README benchmarks BatchedInferencePipeline on the CPU with this batch size
FW_CPU_BATCH_SIZE = 8


def _ggml_converter() -> Any:
    """``scripts/whisper_to_ggml.py`` as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("whisper_to_ggml", REPO / "scripts" / "whisper_to_ggml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("whisper_to_ggml", module)
    spec.loader.exec_module(module)
    return module


class _WhisperCppEngine:
    def __init__(self, model: str, threads: int | None, words: bool) -> None:
        from pywhispercpp.model import Model

        words_params = {"token_timestamps": True, "max_len": 1, "split_on_word": True} if words else {}
        self.model = Model(
            str(_ggml_converter().cached_ggml(model)),
            params_sampling_strategy=0,  # greedy
            redirect_whispercpp_logs_to=None,  # its load log, not the protocol's stdout
            n_threads=threads or 1,
            language="en",
            print_progress=False,
            print_realtime=False,
            print_timestamps=False,
            **words_params,
        )

    def transcribe(self, samples: Any) -> str:
        import numpy as np

        segments = self.model.transcribe(np.ascontiguousarray(samples, dtype=np.float32))
        return " ".join(s.text.strip() for s in segments if s.text.strip())


def ct2_folder(model: str) -> Path:
    """The CTranslate2 folder faster-whisper reads: the package's own, or base's parts joined once."""
    from flarelet.bindings.ai.asr.weights import BUNDLED, read_bundled_bytes
    from flarelet.bindings.ai.settings import AiSettings

    bundled = BUNDLED[model]
    if len(bundled.parts) == 1:
        return bundled.part_paths[0].parent
    folder = AiSettings.from_options({}).cache_dir / "bench" / f"ct2-{model}-{bundled.version_tag}"
    if not (folder / "model.bin").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-ct2-", dir=folder.parent))
        (tmp / "model.bin").write_bytes(read_bundled_bytes(bundled))  # size and sha256 checked
        for item in bundled.meta_dir.iterdir():
            if item.is_file() and item.name != "model.bin" and not item.name.startswith("model.bin."):
                shutil.copy(item, tmp / item.name)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(tmp), folder)
    return folder


def worker_main(engine_name: str, model: str, threads: int | None) -> None:
    """Child process: load one engine, then answer ``{"clip": path.npy}`` lines with timings.

    The answers go to the original stdout; anything an engine prints (a native library writes to file
    descriptor 1 directly) goes to stderr instead, so it never corrupts the protocol."""
    import numpy as np

    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    if engine_name.startswith("flarelet"):
        import torch  # noqa: F401

        import flarelet.bindings.ai.asr.inference  # noqa: F401  (the imports the engine needs, not its load)

        if engine_name == "flarelet-transformers":  # the lean engine itself never imports transformers
            import transformers  # noqa: F401
    elif engine_name == "pipeline":
        import transformers  # noqa: F401
        from transformers import pipeline  # noqa: F401
    elif engine_name.startswith("whispercpp"):
        import pywhispercpp.model  # noqa: F401
    else:
        import faster_whisper  # noqa: F401
    imported = time.perf_counter()
    if engine_name.startswith("flarelet"):
        eng: Any = _FlareletEngine(model, threads, engine_name.partition("-")[2] or None)
    elif engine_name == "pipeline":
        eng = _PipelineEngine(model, threads)
    elif engine_name.startswith("whispercpp"):
        eng = _WhisperCppEngine(model, threads, words=engine_name == "whispercpp-words")
    else:
        eng = _FasterWhisperEngine(model, threads, words=engine_name == "fw-words", batched=engine_name == "fw-batched")
    loaded = time.perf_counter()
    reply = {"import_s": imported - started, "load_s": loaded - imported, "rss_mb": _rss_mb()}
    print(json.dumps(reply), file=reply_to, flush=True)
    cache: dict[str, Any] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        samples = cache.get(cmd["clip"])
        if samples is None:
            samples = cache[cmd["clip"]] = np.load(cmd["clip"])
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        text = eng.transcribe(samples)
        seconds = time.perf_counter() - t0
        print(
            json.dumps({"text": text, "seconds": seconds, "cpu_s": time.process_time() - cpu0, "rss_mb": _rss_mb()}),
            file=reply_to,
            flush=True,
        )


class Worker:
    def __init__(self, engine_name: str, model: str, threads: int | None, baseline: Path | None = None) -> None:
        """``engine_name`` "baseline": the ``flarelet`` engine of another checkout (``--baseline``),
        its own bench script and code, so two versions run side by side in one round-robin."""
        self.name = engine_name
        repo = baseline if engine_name == "baseline" and baseline is not None else REPO
        worker_engine = "flarelet" if engine_name == "baseline" else engine_name
        cmd = [sys.executable, str(repo / "bench" / "whisper.py"), "--worker", worker_engine, "--model", model]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=repo)
        self.info = self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"engine {self.name} exited with {self.proc.wait()}")
        return json.loads(line)

    def run(self, clip: Path) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"clip": str(clip)}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=30)


# -- clips -------------------------------------------------------------------------------------------


@dataclass
class Clip:
    name: str
    npy: Path
    seconds: float
    reference: str


def prepare_clips(names: list[str], folder: Path) -> list[Clip]:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from flarelet.bindings.ai.asr.audio import decode_audio

    manifest: dict[str, dict] = {}
    if (SHARED_AUDIO / "manifest.json").is_file():
        manifest = {e["file"]: e for e in json.loads((SHARED_AUDIO / "manifest.json").read_text())["files"]}
    clips = []
    for name in names:
        source, text = CLIPS[name]
        if source == "espeak":
            if shutil.which("espeak-ng") is None:
                raise SystemExit("espeak-ng is needed for the synthetic clips (scripts/setup installs it)")
            wav = folder / f"{name}.wav"
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            data = wav.read_bytes()
            reference = text or ""
        else:
            path = SHARED_AUDIO / source
            if not path.is_file():
                print(f"skipping {name}: {path} not found", file=sys.stderr)
                continue
            data = path.read_bytes()
            reference = manifest.get(source, {}).get("reference") or ""
            if name == "sonnet":  # the manifest text starts with the sonnet's number, which is not read
                reference = re.sub(r"^\s*1\s*\n", "", reference)
        samples = decode_audio(data)
        npy = folder / f"{name}.npy"
        np.save(npy, samples)
        clips.append(Clip(name, npy, samples.shape[0] / 16000, reference))
    return clips


# -- the table ----------------------------------------------------------------------------------------


def summarize(clips: list[Clip], engines: list[str], cells: dict) -> dict[str, dict[str, Any]]:
    """Per engine over all clips: summed median latency, RTF, pooled WER (errors over all reference
    words, so a long clip weighs what its words weigh) and flarelet's ratios."""
    import jiwer

    out: dict[str, dict[str, Any]] = {}
    for name in engines:
        if not all(cells[(c.name, name)].times for c in clips):
            continue
        latency = sum(statistics.median(cells[(c.name, name)].times) for c in clips)
        refs = [normalize(c.reference) for c in clips if c.reference]
        hyps = [normalize(cells[(c.name, name)].text) or "<empty>" for c in clips if c.reference]
        out[name] = {
            "latency_s": latency,
            "rtf": latency / sum(c.seconds for c in clips),
            "wer": float(jiwer.wer(refs, hyps)) if refs else float("nan"),
        }
    for name, row in out.items():
        if name.startswith("flarelet"):
            for other in RATIO_COLUMNS:
                if other in out:
                    row[f"x_{other}"] = f"{row['latency_s'] / out[other]['latency_s']:.2f}"
    return out


# -- the quiet-machine rule ------------------------------------------------------------------------------


@dataclass
class Quiet:
    """What the load average said before the run: quiet means the 1-minute average below ``threshold``."""

    load: float
    threshold: float = QUIET_LOAD
    waited_s: float = 0.0
    #: None: not waited for; False: ``--wait-quiet`` ran out first
    got_quiet: bool | None = None

    @property
    def quiet(self) -> bool:
        return self.load < self.threshold

    def line(self) -> str:
        text = (
            f"quiet machine: {'yes' if self.quiet else 'no'} "
            f"(load average {self.load:.2f} before, threshold {self.threshold})"
        )
        if self.got_quiet is not None:
            text += f"; waited {self.waited_s:.0f} s" + ("" if self.got_quiet else ", it never got quiet")
        return text


def wait_quiet(
    limit_s: float,
    threshold: float = QUIET_LOAD,
    poll_s: float = 5.0,
    loadavg: Any = os.getloadavg,
    sleep: Any = time.sleep,
    clock: Any = time.monotonic,
) -> Quiet:
    """Poll the 1-minute load average until it is below ``threshold`` or ``limit_s`` has passed.

    Sleeping between polls (never spinning): the wait itself must not keep the machine busy."""
    start = clock()
    load = loadavg()[0]
    while load >= threshold and clock() - start < limit_s:
        print(f"waiting for a quiet machine: load average {load:.2f} >= {threshold}", file=sys.stderr, flush=True)
        sleep(max(0.0, min(poll_s, limit_s - (clock() - start))))
        load = loadavg()[0]
    return Quiet(load, threshold, clock() - start, load < threshold)


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    text: str = ""
    consistent: bool = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny.en", "base"), default="tiny.en")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for every engine (default: flarelet's `threads` setting; for flarelet the "
        "encoder's threads -- its decoder always runs on one)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per engine and clip (after one warm-up)")
    parser.add_argument("--clips", default="c10,c60,jfk,sonnet", help=f"comma-separated, from {', '.join(CLIPS)}")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated, from {', '.join(ENGINES + EXTRA_ENGINES)} "
        f"(default: all but {', '.join(EXTRA_ENGINES)})",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. `git worktree add /tmp/base <commit>`): adds its `flarelet` engine as "
        "`baseline`, run round-robin with the others",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"first wait up to SECONDS for the 1-minute load average to drop below {QUIET_LOAD} "
        "(the quiet-machine rule); the run starts anyway after that, and says it was not quiet",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(REPO))
        worker_main(args.worker, args.model, args.threads)
        return 0

    if args.threads is None:
        sys.path.insert(0, str(REPO))
        from flarelet.bindings.ai.settings import AiSettings

        args.threads = AiSettings.from_options({}).threads
    engines = [e for e in args.engines.split(",") if e]
    if args.baseline is not None and "baseline" not in engines:
        engines.append("baseline")
    unknown = set(engines) - set(ENGINES) - set(EXTRA_ENGINES) - ({"baseline"} if args.baseline else set())
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    if any(e.startswith("whispercpp") for e in engines):
        import importlib.util

        if importlib.util.find_spec("pywhispercpp") is None:
            parser.error("the whispercpp engines need pywhispercpp: pip install pywhispercpp==1.5.1 (the bench extra)")
        _ggml_converter().cached_ggml(args.model)  # converted once, before any engine's load time is taken
    if args.wait_quiet is not None:
        quiet = wait_quiet(args.wait_quiet)
    else:
        quiet = Quiet(os.getloadavg()[0])
    print(quiet.line(), file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="flarelet-bench-") as tmp:
        clips = prepare_clips([c for c in args.clips.split(",") if c], Path(tmp))
        workers: dict[str, Worker] = {}
        try:
            for name in engines:  # one at a time, so load times are not inflated by each other
                workers[name] = Worker(name, args.model, args.threads, args.baseline)
            cells: dict[tuple[str, str], Cell] = {(c.name, e): Cell() for c in clips for e in engines}
            for round_no in range(args.runs + 1):
                for clip in clips:
                    shift = round_no % len(engines)
                    for name in engines[shift:] + engines[:shift]:
                        result = workers[name].run(clip.npy)
                        cell = cells[(clip.name, name)]
                        if cell.text and result["text"] != cell.text:
                            cell.consistent = False
                        cell.text = result["text"]
                        if round_no > 0:  # round 0 is the warm-up
                            cell.times.append(result["seconds"])
                print(f"round {round_no}/{args.runs} done", file=sys.stderr, flush=True)
            rss = {name: w.run(clips[0].npy)["rss_mb"] for name, w in workers.items()} if clips else {}
        finally:
            for w in workers.values():
                w.close()
    load_after = os.getloadavg()

    rows = []
    results: dict[str, Any] = {
        "model": args.model,
        "threads": args.threads,
        "runs": args.runs,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "quiet": quiet.quiet,
        "quiet_threshold": quiet.threshold,
        "quiet_load": quiet.load,
        "quiet_waited_s": quiet.waited_s if quiet.got_quiet is not None else None,
        "cells": [],
    }
    print()
    from flarelet.bindings.ai.settings import DEFAULT_QUANTIZE

    quantize = os.environ.get("FLARELET_AI_QUANTIZE") or f"{DEFAULT_QUANTIZE} (default)"
    print(
        f"Whisper {args.model}, greedy, language en, threads={args.threads}, flarelet quantize={quantize}, "
        f"{args.runs} runs (+1 warm-up), "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before / {load_after[0]:.2f} after"
    )
    print(quiet.line())
    print()
    header = ["clip", "engine", "load s", "latency s (min-max)", "RTF", "RSS MB", "WER", *RATIO_COLUMNS.values()]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for clip in clips:
        medians = {e: statistics.median(cells[(clip.name, e)].times) for e in engines if cells[(clip.name, e)].times}
        for name in engines:
            cell = cells[(clip.name, name)]
            med = medians.get(name)
            if med is None:
                continue
            w = word_error_rate(clip.reference, cell.text) if clip.reference else float("nan")

            def ratio(other: str) -> str:
                if not name.startswith("flarelet") or other not in medians:
                    return ""
                return f"{medians[name] / medians[other]:.2f}"

            row = [
                f"{clip.name} ({clip.seconds:.1f} s)",
                name,
                f"{workers[name].info['load_s']:.2f}",
                f"{med:.2f} ({min(cell.times):.2f}-{max(cell.times):.2f})",
                f"{med / clip.seconds:.3f}",
                f"{rss.get(name, float('nan')):.0f}",
                f"{w:.3f}" + ("" if cell.consistent else "*"),
                *(ratio(other) for other in RATIO_COLUMNS),
            ]
            rows.append(row)
            print("| " + " | ".join(row) + " |")
            results["cells"].append(
                {
                    "clip": clip.name,
                    "clip_s": clip.seconds,
                    "engine": name,
                    "times": cell.times,
                    "load_s": workers[name].info["load_s"],
                    "import_s": workers[name].info["import_s"],
                    "rss_mb": rss.get(name),
                    "wer": w,
                    "text": cell.text,
                }
            )
    print()
    print(
        "x fw / x fw-words / x wcpp / x pipe: that flarelet row's latency divided by that engine's "
        "(fw, fw-words, whispercpp, pipeline; < 1 = flarelet faster). "
        "* = transcript changed between runs."
    )
    summary = summarize(clips, engines, cells)
    results["summary"] = summary
    if len(clips) > 1 and summary:
        print()
        print(
            f"All clips together ({sum(c.seconds for c in clips):.1f} s of audio): latency = sum of the medians, "
            "WER = all word errors / all reference words"
        )
        print()
        print("| engine | latency s | RTF | WER | " + " | ".join(RATIO_COLUMNS.values()) + " |")
        print("|---|---|---|---|" + "---|" * len(RATIO_COLUMNS))
        for name, row in summary.items():
            ratios = " | ".join(row.get(f"x_{other}", "") for other in RATIO_COLUMNS)
            print(f"| {name} | {row['latency_s']:.2f} | {row['rtf']:.3f} | {row['wer']:.3f} | {ratios} |")
    for clip in clips:
        if "flarelet" in engines:
            print(f"\n{clip.name} flarelet: {cells[(clip.name, 'flarelet')].text.strip()[:300]}", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
