"""Metadata server write throughput: step-status updates from 1, 4 and 16 client processes.

A real server (`python -m runner.metadata.server`, SQLite in WAL mode, one uvicorn worker)
on a fresh database. Each client is its own process with its own `MetadataClient` and its
own steps; all start together. Two ways to write: one `PATCH /steps/{id}` per update, and
`POST /steps/batch` with 50 updates per request (what the runner uses for several steps at
once). Each update sets a step's status and a `log_uri` naming the client and the update's
sequence number; afterwards every step must hold its last update (nothing lost).

Target: 1,000 step-status writes take under 1 s from 16 clients (>= 1,000 writes/s).
"""

from __future__ import annotations

import multiprocessing
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import CommandFailed, Row, Section, main

from runner.metadata.client import MetadataClient
from runner.metadata.launcher import start_server

TITLE = "Metadata server writes"
CLIENTS = (1, 4, 16)
REPETITIONS = 3
SINGLE_WRITES = 1200  # per configuration, split over the clients
BATCH_WRITES = 8000
BATCH = 50
STEPS_PER_CLIENT = 4
TARGET = 1.0  # seconds per 1,000 writes from 16 clients
STATUSES = ("running", "completed")


def _client(
    url: str, token: str, steps: list[str], writes: int, batch: int, start: object, out: object
) -> None:
    latencies = []
    last: dict[str, str] = {}
    with MetadataClient(url, token, timeout=60) as client:
        client.health()  # connect before the start line
        start.wait()  # type: ignore[attr-defined]
        seq = 0
        while seq < writes:
            updates = []
            for _ in range(min(batch, writes - seq)):
                step = steps[seq % len(steps)]
                mark = f"mark-{step}-{seq}"
                updates.append({"id": step, "status": STATUSES[seq % 2], "log_uri": mark})
                last[step] = mark
                seq += 1
            began = time.perf_counter()
            if batch == 1:
                u = updates[0]
                client.update_step(u["id"], status=u["status"], log_uri=u["log_uri"])
            else:
                client.update_steps(updates)
            latencies.append(time.perf_counter() - began)
    out.put((latencies, last))  # type: ignore[attr-defined]


def _measure(
    url: str, token: str, clients: int, writes: int, batch: int
) -> tuple[float, list[float], int]:
    """Seconds for ``writes`` updates from ``clients`` processes, request latencies, lost."""
    with MetadataClient(url, token) as setup:
        run = setup.create_run("bench-metadata", "bench", {})
        steps = [
            [setup.create_step(run.id, f"c{c}-s{s}").id for s in range(STEPS_PER_CLIENT)]
            for c in range(clients)
        ]
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    per_client = writes // clients
    procs = [
        ctx.Process(target=_client, args=(url, token, steps[c], per_client, batch, start, out))
        for c in range(clients)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    results = [out.get(timeout=300) for _ in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join(timeout=30)
        if proc.exitcode != 0:
            raise CommandFailed(f"a client process exited {proc.exitcode}")
    latencies = [lat for lats, _ in results for lat in lats]
    expected = {step: mark for _, last in results for step, mark in last.items()}
    with MetadataClient(url, token) as check:
        stored = {s.id: s.log_uri for s in check.list_steps(run.id)}
    lost = sum(1 for step, mark in expected.items() if stored.get(step) != mark)
    return seconds * 1000 / (per_client * clients), latencies, lost


def _pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def bench() -> Section:
    token = secrets.token_urlsafe(24)
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-metadata-") as tmp:
        db = Path(tmp) / "metadata.db"
        with start_server(f"sqlite:///{db}", token, log_path=Path(tmp) / "server.log") as server:
            for label, writes, batch in (
                ("`PATCH /steps/{id}`, one update per request", SINGLE_WRITES, 1),
                (f"`POST /steps/batch`, {BATCH} updates per request", BATCH_WRITES, BATCH),
            ):
                for clients in CLIENTS:
                    per_k, p50, p99, lost_total = [], [], [], 0
                    for _ in range(REPETITIONS):
                        seconds, lats, lost = _measure(server.url, token, clients, writes, batch)
                        per_k.append(seconds)
                        p50.append(_pct(lats, 50))
                        p99.append(_pct(lats, 99))
                        lost_total += lost
                    if lost_total:
                        raise CommandFailed(f"{lost_total} updates lost ({label}, {clients})")
                    target = TARGET if clients == 16 and batch > 1 else None
                    who = f"{label}, {clients} client{'s' if clients > 1 else ''}"
                    rows.append(Row(f"{who}: time per 1,000 writes", per_k, target=target))
                    rows.append(Row(f"{who}: request p50", p50, "ms"))
                    rows.append(Row(f"{who}: request p99", p99, "ms"))
                    rate = 1000 / statistics.median(per_k)
                    notes.append(f"- {who}: {rate:,.0f} step-status writes/s (median); lost 0.")
    intro = (
        f"{REPETITIONS} repetitions per row on one server and database; {SINGLE_WRITES} single"
        f" and {BATCH_WRITES} batched updates per repetition, split over the clients. Time per"
        " 1,000 writes is wall time from the common start until the last client finished;"
        " p50/p99 are per request (a batch request carries"
        f" {BATCH} updates). Every step was read back afterwards: it held its last update."
    )
    return Section(TITLE, intro, rows, notes)


if __name__ == "__main__":
    sys.exit(main(bench))
