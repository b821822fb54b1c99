"""Benchmark: `sftline serve` on loopback, batching on (the defaults) against batching off.

    python bench/bench_serve.py                          # 600 requests a level, concurrency 1, 8, 32
    python bench/bench_serve.py --requests 200 --concurrency 1,8,32 --json
    python bench/bench_serve.py --soak 10000             # 10,000 requests at concurrency 32: no 5xx
    python bench/bench_serve.py --chat --requests 16 --concurrency 1,8   # SmolLM2-135M, chat
    python bench/bench_serve.py --workdir /tmp/serve-bench   # keep the project; a rerun reuses it

Set-up, in a temporary folder (or `--workdir`): `sftline init` a classify project (abstention
label oos, base model MiniLM-L6), import a seeded slice of CLINC150 (`--train-rows` in-scope
training queries and the 100 out-of-scope ones), `sftline train` a MiniLM classifier for
`--epochs` (1: a brief run; its accuracy does not matter here, its shape does), register the run,
promote it to production with `--force` and add a key. With `--chat` nothing is trained: the
server answers with the embedded SmolLM2-135M-Instruct (`sftline serve --model ...`), greedy, at
most `--max-tokens` answer tokens. The embedded models come from installed packages: no network.

Measurement: the real CLI server (`sftline serve --port P`) as a subprocess, one at the
defaults a user gets (batching on: `max_batch` 16, `window_ms` 5, `max_queue` 256) and one with
`--deployments` holding `queue: {batching: false}`, both up (each ready on /readyz) and the levels
interleaved, batched then unbatched at each concurrency, so load from other jobs falls on both
alike. The load generator is
this process: asyncio and one `httpx.AsyncClient` per level, `concurrency` workers sending
`requests` requests between them (one CLINC150 test query each, the test split and its
out-of-scope queries in a seeded order), after one uncounted request per connection. Per level:
answered (200) requests per second over the level's wall time, p50/p95/p99 client latency of the
answered ones, the status codes (and transport errors, by exception), the server's peak RSS
during the level (VmHWM of /proc/PID/status, reset before the level through clear_refs), the mean
model batch (from the server's `sftline_batch_size` metric) and the load average. Then the ratio
of batched to unbatched throughput at each concurrency.

`--soak N` instead sends N requests at `--soak-concurrency` (32) to the server at its defaults
and exits 1 on any 5xx or transport error; 429s (the queue full) are allowed, counted and
reported. Any 5xx in the levels also exits 1. The client shares the machine's cores with the
server: on 2 cores, what it spends is taken from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT / "examples" / "clinc150" / "data_full.json"
SFTLINE = str(Path(sys.executable).parent / "sftline")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
CHAT_BASE = "smollm2-135m-instruct"
UNBATCHED = "queue: {batching: false}\n"
READY_TIMEOUT_S = 300.0
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


@dataclass
class Project:
    """A served project: where it is, what to call, with which key."""

    folder: Path
    model: str
    """The `model` of each request: the registered name, or the base model with `--chat`."""
    key: str
    serve_args: list[str]
    """Extra `sftline serve` arguments (`--model` with `--chat`)."""
    endpoint: str
    """/v1/classify or /v1/chat/completions."""


@dataclass
class Level:
    server: str
    """batched (the defaults) or unbatched."""
    concurrency: int
    requests: int
    seconds: float
    statuses: dict[str, int]
    latency_ms: dict[str, float | None]
    """p50, p95, p99 and max of the answered (200) requests."""
    requests_per_s: float
    """Answered requests over the level's wall time."""
    peak_rss_mb: float | None
    mean_batch: float | None
    """Requests per model batch during the level (the server's sftline_batch_size)."""
    load: list[float] = field(default_factory=list)
    """1-minute load average before and after the level."""


# --- set-up --------------------------------------------------------------------------------------


def sftline(*args: str, cwd: Path) -> str:
    """stdout of an `sftline` command run in `cwd` (exits with its stderr if it fails)."""
    result = subprocess.run([SFTLINE, *args], cwd=cwd, capture_output=True, text=True, env=ENV)
    if result.returncode != 0:
        raise SystemExit(f"sftline {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def set_up(workdir: Path, *, chat: bool, train_rows: int, epochs: float, seed: int) -> Project:
    """The project in `workdir` (made on the first call, read back from bench.json after)."""
    folder = workdir / ("chat" if chat else "classify")
    saved = folder / "bench.json"
    if saved.exists():
        console.print(f"reusing the project in {folder}")
        return Project(**{**json.loads(saved.read_text()), "folder": folder})
    started = time.perf_counter()
    if chat:
        sftline(
            "init",
            str(folder),
            "--task",
            "chat",
            "--base-model",
            CHAT_BASE,
            "--name",
            "serve-bench",
            cwd=workdir,
        )
        model, serve_args, endpoint = CHAT_BASE, ["--model", CHAT_BASE], "/v1/chat/completions"
    else:
        sftline(
            "init", str(folder), "--task", "classify", "--abstention", "oos", "--base-model", "minilm-l6",
            "--name", "serve-bench", cwd=workdir,
        )  # fmt: skip
        data = json.loads(CLINC.read_text())
        train = list(data["train"])
        random.Random(seed).shuffle(train)
        rows = train[:train_rows] + data["oos_train"]
        lines = [json.dumps({"text": text, "label": label}) for text, label in rows]
        (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
        sftline("data", "import", "train.jsonl", "--name", "clinc", cwd=folder)
        console.print(f"training MiniLM-L6 on {len(rows):,} CLINC150 queries for {epochs:g} epoch(s)")
        trained = sftline(
            "train", "--base", "minilm-l6", "--data", "clinc", "--task", "classify", "--epochs", str(epochs),
            "--seed", str(seed), "--json", cwd=folder,
        )  # fmt: skip
        run = json.loads(trained)["run"]
        version = json.loads(sftline("models", "register", run, "--json", cwd=folder))["version"]
        sftline(
            "models", "promote", version, "--to", "production", "--force", "--reason", "bench", cwd=folder
        )
        model, serve_args, endpoint = "serve-bench", [], "/v1/classify"
    key = json.loads(sftline("keys", "add", "bench", "--json", cwd=folder))["key"]
    (folder / "unbatched.yaml").write_text(UNBATCHED)
    project = Project(folder, model, key, serve_args, endpoint)
    saved.write_text(json.dumps({k: v for k, v in asdict(project).items() if k != "folder"}))
    console.print(f"set up {folder} in {time.perf_counter() - started:.0f} s")
    return project


def queries(seed: int) -> list[str]:
    """CLINC150's test queries, in scope and out of scope, in a seeded order."""
    data = json.loads(CLINC.read_text())
    texts = [text for text, _ in data["test"] + data["oos_test"]]
    random.Random(seed).shuffle(texts)
    return texts


def payloads(project: Project, texts: list[str], max_tokens: int) -> list[dict[str, Any]]:
    if project.endpoint == "/v1/classify":
        return [{"model": project.model, "input": text} for text in texts]
    return [
        {"model": project.model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
        for text in texts
    ]


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`sftline serve` as a subprocess: its address and its memory."""

    def __init__(self, process: subprocess.Popen[bytes], root: str, key: str) -> None:
        self.process = process
        self.root = root
        self.headers = {"Authorization": f"Bearer {key}"}

    def reset_peak(self) -> None:
        """Start VmHWM again from the current RSS (writing 5 to clear_refs; Linux 4.0+)."""
        with contextlib.suppress(OSError):  # else the peak covers the process's life so far
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
        return None if kib is None else kib / 1024

    def batches(self) -> tuple[float, float]:
        """(requests, batches) the server's engines have run so far, from /metrics."""
        text = httpx.get(f"{self.root}/metrics", headers=self.headers, timeout=30).text
        totals = {"sftline_batch_size_sum": 0.0, "sftline_batch_size_count": 0.0}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        return totals["sftline_batch_size_sum"], totals["sftline_batch_size_count"]


@contextmanager
def serving(project: Project, deployments: Path | None, log: Path) -> Iterator[ServeProcess]:
    """`sftline serve` on a free port until the block ends (then SIGTERM: it drains and stops)."""
    port = free_port()
    args = [SFTLINE, "serve", "--port", str(port), *project.serve_args]
    if deployments is not None:
        args += ["--deployments", str(deployments)]
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=project.folder, stdout=out, stderr=subprocess.STDOUT, env=ENV)
    server = ServeProcess(process, f"http://127.0.0.1:{port}", project.key)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"sftline serve exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{server.root}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"sftline serve was not ready within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the load ------------------------------------------------------------------------------------


async def drive(
    server: ServeProcess,
    endpoint: str,
    bodies: list[dict[str, Any]],
    *,
    requests: int,
    concurrency: int,
    progress: Progress,
    label: str,
) -> tuple[float, list[float], Counter[str]]:
    """`requests` requests from `concurrency` workers: (seconds, latencies in ms of the answered
    ones, status codes)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    task = progress.add_task(label, total=requests)
    async with httpx.AsyncClient(
        base_url=server.root, headers=server.headers, limits=limits, timeout=120
    ) as client:
        # One uncounted request per connection: the pool opened, the model warm.
        await asyncio.gather(*(client.post(endpoint, json=bodies[i]) for i in range(concurrency)))
        numbers = iter(range(requests))

        async def worker() -> None:
            for i in numbers:  # shared by the workers: each number is sent once
                started = time.perf_counter()
                try:
                    response = await client.post(endpoint, json=bodies[i % len(bodies)])
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == "200":
                    latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] += 1
                progress.advance(task)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    progress.remove_task(task)
    return seconds, latencies, statuses


def measure(
    server: ServeProcess,
    project: Project,
    bodies: list[dict[str, Any]],
    *,
    name: str,
    requests: int,
    concurrency: int,
    progress: Progress,
) -> Level:
    load_before = os.getloadavg()[0]
    server.reset_peak()
    batched_before = server.batches()
    seconds, latencies, statuses = asyncio.run(
        drive(
            server,
            project.endpoint,
            bodies,
            requests=requests,
            concurrency=concurrency,
            progress=progress,
            label=f"{name}, concurrency {concurrency}",
        )
    )
    batched_after = server.batches()
    # The warm-up's requests fall within the delta too: concurrency requests in up to as many batches.
    rows, batches = (after - before for after, before in zip(batched_after, batched_before, strict=True))
    points = np.percentile(latencies, [50, 95, 99, 100]).tolist() if latencies else [None] * 4
    return Level(
        server=name,
        concurrency=concurrency,
        requests=requests,
        seconds=round(seconds, 3),
        statuses=dict(sorted(statuses.items())),
        latency_ms={
            q: None if v is None else round(v, 1)
            for q, v in zip(("p50", "p95", "p99", "max"), points, strict=True)
        },
        requests_per_s=round(len(latencies) / seconds, 2),
        peak_rss_mb=None if (peak := server.peak_rss_mb()) is None else round(peak),
        mean_batch=round(rows / batches, 2) if batches else None,
        load=[round(load_before, 2), round(os.getloadavg()[0], 2)],
    )


# --- report --------------------------------------------------------------------------------------


def table(levels: list[Level], title: str) -> Table:
    out = Table(title=title)
    for column in ("server", "concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "statuses"):
        out.add_column(column, justify="left" if column in ("server", "statuses") else "right")
    for column in ("mean batch", "peak RSS MB", "load"):
        out.add_column(column, justify="right")
    for level in levels:
        ms = level.latency_ms
        out.add_row(
            level.server,
            str(level.concurrency),
            f"{level.requests:,}",
            f"{level.requests_per_s:.1f}",
            *(f"{ms[q]:.0f}" if ms[q] is not None else "-" for q in ("p50", "p95", "p99")),
            " ".join(f"{code}:{n}" for code, n in level.statuses.items()),
            f"{level.mean_batch:.1f}" if level.mean_batch is not None else "-",
            f"{level.peak_rss_mb:,.0f}" if level.peak_rss_mb is not None else "-",
            f"{level.load[0]:.1f}->{level.load[1]:.1f}",
        )
    return out


def ratios(levels: list[Level]) -> dict[int, float | None]:
    """Batched over unbatched throughput at each concurrency."""
    by = {(level.server, level.concurrency): level.requests_per_s for level in levels}
    return {
        c: round(by[("batched", c)] / by[("unbatched", c)], 2) if by.get(("unbatched", c)) else None
        for (server, c) in by
        if server == "batched"
    }


def failures(levels: list[Level]) -> int:
    """5xx answers and transport errors (no answer at all)."""
    return sum(
        n for level in levels for code, n in level.statuses.items() if not code.isdigit() or int(code) >= 500
    )


def progress_bars() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


def run_levels(
    project: Project, bodies: list[dict[str, Any]], concurrencies: list[int], requests: int
) -> list[Level]:
    """Both servers up at once, the levels interleaved (batched then unbatched at each concurrency)
    so that a change in the machine's load falls on both alike. An idle server costs its memory
    and two background threads that wake every few seconds."""
    deployments = {"batched": None, "unbatched": project.folder / "unbatched.yaml"}
    levels: list[Level] = []
    with contextlib.ExitStack() as stack, progress_bars() as progress:
        servers = {
            name: stack.enter_context(serving(project, file, project.folder / f"serve-{name}.log"))
            for name, file in deployments.items()
        }
        for concurrency in concurrencies:
            for name, server in servers.items():
                level = measure(
                    server,
                    project,
                    bodies,
                    name=name,
                    requests=requests,
                    concurrency=concurrency,
                    progress=progress,
                )
                levels.append(level)
                progress.console.print(
                    f"{name} c={concurrency}: {level.requests_per_s:.1f} req/s, "
                    f"p95 {level.latency_ms['p95']} ms, {level.statuses}, load {level.load}"
                )
    return levels


def run_soak(project: Project, bodies: list[dict[str, Any]], requests: int, concurrency: int) -> Level:
    """`requests` requests at `concurrency` to the server at its defaults."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        serving(project, None, project.folder / "serve-soak.log") as server,
        Progress(*columns, console=console) as progress,
    ):
        return measure(
            server,
            project,
            bodies,
            name="batched",
            requests=requests,
            concurrency=concurrency,
            progress=progress,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="requests per level (default 600)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--soak", type=int, help="instead of the levels: this many requests, batching on")
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--chat", action="store_true", help=f"{CHAT_BASE} on /v1/chat/completions")
    parser.add_argument("--max-tokens", type=int, default=16, help="--chat: answer tokens at most")
    parser.add_argument("--train-rows", type=int, default=1500, help="in-scope CLINC150 training queries")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the project here (reused when it exists)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        project = set_up(
            workdir, chat=args.chat, train_rows=args.train_rows, epochs=args.epochs, seed=args.seed
        )
        bodies = payloads(project, queries(args.seed), args.max_tokens)
        if args.soak:
            levels = [run_soak(project, bodies, args.soak, args.soak_concurrency)]
        else:
            levels = run_levels(project, bodies, concurrencies, args.requests)

    what = f"{CHAT_BASE} chat, {args.max_tokens} tokens at most" if args.chat else "MiniLM-L6 classifier"
    console.print(table(levels, f"sftline serve on loopback: {what}, {os.cpu_count()} CPUs"))
    speedups = {} if args.soak else ratios(levels)
    if speedups:
        console.print(
            "batched / unbatched throughput: "
            + ", ".join(f"concurrency {c}: {r}x" for c, r in speedups.items() if r is not None)
        )
    bad = failures(levels)
    if args.soak:
        too_busy = levels[0].statuses.get("429", 0)
        console.print(f"soak: {args.soak:,} requests, 5xx and transport errors {bad}, 429 {too_busy}")
    if args.json:
        machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
        result = {
            "machine": machine,
            "model": what,
            "levels": [asdict(level) for level in levels],
            "batched_over_unbatched": speedups,
            "failures": bad,
        }
        print(json.dumps(result, indent=2))
    if bad:
        console.print(f"[red]{bad} requests got a 5xx or no answer[/red]")
        sys.exit(1)


if __name__ == "__main__":
    main()
