"""Benchmark: a whole 400-assignment study replayed against `study-server serve` + PostgreSQL.

    python bench/server.py                      # 10,000 images, 400 x 25, 50 concurrent clients
    python bench/server.py --assignments 40 --clients 10 --workers 2

Each simulated worker does what a browser does on MTurk: the preview page, the accepted
HIT page (its consent text agreed to), accept (allocation), the 25 images each followed by
saving its label, submit. 50 of them run at once (asyncio + aiohttp) against uvicorn on a
loopback port, in its own process, on a fresh PostgreSQL database. Printed: total time, requests, errors, p50/p99 latency (all requests, and per
step), and the throughput ratio to a bare FastAPI endpoint served by the same uvicorn
and hammered by the same client in the same run (the ceiling this machine and client
allow). After the run the database is checked: every label stored once.
Goals, as ratios to the bare endpoint in the same run: zero errors, the study's p99 at most
2x the bare endpoint's p99, and server CPU per request at most 1.5x the bare endpoint's.
Also printed: the whole machine's CPU per request (/proc/stat: client, server and PostgreSQL
together), which bounds the throughput, and so the latency, of 50 clients that always wait.

Then (`--steps N`, 200 by default) each kind of request alone, on a second study of N
assignments: every page, then every accept, every image, every save, every submit, each
kind with the server's CPU per request. The replay mixes them; this says where the CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
# The page's data block (label.html): the accept carries its consentSha256.
CONFIG = re.compile(r'<script type="application/json" id="config">(.*?)</script>', re.DOTALL)
SUBMIT_HOST = "https://workersandbox.mturk.com"
sys.path.insert(0, str(ROOT))

# A bare endpoint: what uvicorn + FastAPI + this client do with no work behind them.
bare_app = FastAPI()


@bare_app.get("/bare")
def bare() -> dict[str, bool]:
    return {"ok": True}


def machine_cpu_seconds() -> float:
    """CPU time of every process on the machine (/proc/stat): the client, the server and
    PostgreSQL share these cores, so this is what bounds the throughput of a closed loop."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Recorder:
    """Times every request and keeps what went wrong (any HTTP status >= 400 is an error)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.server_cpu = self.client_cpu = self.machine_cpu = 0.0

    async def call(self, step: str, method: str, url: str, **kwargs: Any) -> bytes | None:
        started = time.perf_counter()
        try:
            async with self.session.request(method, url, **kwargs) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError as error:
            self.errors.append(f"{step}: {type(error).__name__}: {error}")
            return None
        self.latency[step].append(time.perf_counter() - started)
        if status >= 400:
            self.errors.append(f"{step}: HTTP {status} {body[:200]!r}")
            return None
        return body

    def all(self) -> list[float]:
        return [v for values in self.latency.values() for v in values]


@dataclass(frozen=True)
class Person:
    """A simulated MTurk worker: their ids, from a prefix (each study its own) and a number."""

    prefix: str
    index: int

    @property
    def worker(self) -> str:
        return f"{self.prefix}W{self.index:05d}"

    @property
    def assignment(self) -> str:
        return f"{self.prefix}A{self.index:05d}"

    @property
    def hit(self) -> str:
        return f"{self.prefix}HIT{self.index:05d}"


async def open_page(recorder: Recorder, slug: str, person: Person) -> str | None:
    """The accepted HIT page; returns the SHA-256 of the consent text it shows."""
    params = {
        "assignmentId": person.assignment,
        "hitId": person.hit,
        "workerId": person.worker,
        "turkSubmitTo": SUBMIT_HOST,
    }
    page = await recorder.call("page", "GET", f"/hit/{slug}", params=params)
    if page is None:
        return None
    return json.loads(CONFIG.search(page.decode()).group(1))["consentSha256"]


async def accept(recorder: Recorder, slug: str, person: Person, consent: str) -> dict | None:
    mturk = {
        "assignment_id": person.assignment,
        "hit_id": person.hit,
        "turk_submit_to": SUBMIT_HOST,
    }
    body = {"worker_id": person.worker, "mturk": mturk, "consent_sha256": consent}
    accepted = await recorder.call("accept", "POST", f"/api/studies/{slug}/accept", json=body)
    return None if accepted is None else json.loads(accepted)


def label_at(person: Person, position: int) -> dict[str, int]:
    """The label a simulated worker gives the image at `position`."""
    return {"position": position, "label": (person.index + position) % 10, "response_ms": 900}


def labels_for(person: Person, accepted: dict) -> list[dict[str, int]]:
    return [label_at(person, p) for p in range(accepted["num_items"])]


async def save(recorder: Recorder, person: Person, accepted: dict, label: dict[str, int]) -> None:
    """One label kept on the server as it is given (a reload resumes)."""
    await recorder.call(
        "save",
        "PUT",
        f"{accepted['label_url_prefix']}{label['position']}",
        json={
            "worker_id": person.worker,
            "mturk_assignment_id": person.assignment,
            "label": label["label"],
            "response_ms": label["response_ms"],
        },
    )


async def submit(recorder: Recorder, person: Person, accepted: dict) -> None:
    body = {
        "worker_id": person.worker,
        "mturk_assignment_id": person.assignment,
        "labels": labels_for(person, accepted),
    }
    await recorder.call("submit", "POST", accepted["submit_url"], json=body)


async def worker_flow(recorder: Recorder, slug: str, person: Person) -> None:
    await recorder.call(
        "preview",
        "GET",
        f"/hit/{slug}",
        params={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": person.hit},
    )
    # The worker reads the consent text and agrees: the page sends the SHA-256 it was shown.
    consent = await open_page(recorder, slug, person)
    if consent is None:
        return
    accepted = await accept(recorder, slug, person, consent)
    if accepted is None:
        return
    for url, label in zip(accepted["item_urls"], labels_for(person, accepted), strict=True):
        await recorder.call("image", "GET", url)
        await save(recorder, person, accepted, label)
    await submit(recorder, person, accepted)


def _client(url: str, clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients)
    return aiohttp.ClientSession(
        base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    )


async def run_jobs(
    url: str, clients: int, jobs: Iterable[Callable[[Recorder], Awaitable[None]]]
) -> tuple[Recorder, float]:
    """`jobs` run by `clients` concurrent clients, each taking the next job when done."""
    todo = iter(jobs)
    async with _client(url, clients) as session:
        recorder = Recorder(session)

        async def run_client() -> None:
            for job in todo:
                await job(recorder)

        started = time.perf_counter()
        await asyncio.gather(*(run_client() for _ in range(clients)))
        return recorder, time.perf_counter() - started


def replay_study(url: str, slug: str, *, assignments: int, clients: int) -> tuple[Recorder, float]:
    people = [Person("BENCH", i) for i in range(assignments)]
    jobs = [functools.partial(worker_flow, slug=slug, person=p) for p in people]
    return asyncio.run(run_jobs(url, clients, jobs))


def step_costs(server: Any, slug: str, *, assignments: int, clients: int) -> list[tuple]:
    """Each step of the study alone, all of its requests in a row (every page, then every
    accept, ...): the server's CPU per request of each kind, which the whole replay mixes."""
    people = [Person("STEP", i) for i in range(assignments)]
    consent: dict[int, str] = {}
    accepted: dict[int, dict] = {}

    async def page(recorder: Recorder, person: Person) -> None:
        consent[person.index] = await open_page(recorder, slug, person) or ""

    async def accept_one(recorder: Recorder, person: Person) -> None:
        accepted[person.index] = await accept(recorder, slug, person, consent[person.index])

    async def image(recorder: Recorder, person: Person, position: int) -> None:
        await recorder.call("image", "GET", accepted[person.index]["item_urls"][position])

    async def save_one(recorder: Recorder, person: Person, position: int) -> None:
        await save(recorder, person, accepted[person.index], label_at(person, position))

    async def submit_one(recorder: Recorder, person: Person) -> None:
        await submit(recorder, person, accepted[person.index])

    phases: list[tuple[str, Callable[[], list]]] = [
        ("page", lambda: [functools.partial(page, person=p) for p in people]),
        ("accept", lambda: [functools.partial(accept_one, person=p) for p in people]),
        ("image", lambda: _per_item(image, people, accepted)),
        ("save", lambda: _per_item(save_one, people, accepted)),
        ("submit", lambda: [functools.partial(submit_one, person=p) for p in people]),
    ]
    costs = []
    for step, jobs in phases:
        cpu_before = server.cpu_seconds()
        recorder, _ = asyncio.run(run_jobs(server.url, clients, jobs()))
        costs.append((step, recorder, server.cpu_seconds() - cpu_before))
    return costs


def _per_item(step: Callable, people: list[Person], accepted: dict[int, dict]) -> list:
    return [
        functools.partial(step, person=p, position=position)
        for p in people
        for position in range(accepted[p.index]["num_items"])
    ]


def hammer_bare(url: str, *, requests: int, clients: int) -> tuple[Recorder, float]:
    async def bare_request(recorder: Recorder) -> None:
        await recorder.call("bare", "GET", "/bare")

    return asyncio.run(run_jobs(url, clients, [bare_request] * requests))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", type=int, default=400)
    parser.add_argument("--items", type=int, default=25)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes of the study server"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=200,
        metavar="N",
        help="after the replay, each step alone on a second study of N assignments: the "
        "server's CPU per request of each kind (0: skip)",
    )
    args = parser.parse_args()

    from sqlalchemy import func, select

    from study_server.db.models import Assignment, Label, Study
    from study_server.synthetic import write_synthetic_bundle
    from testkit.databases import DatabaseFactory, session_for
    from testkit.servers import serve_process
    from testkit.studies import import_study, register_hits

    with tempfile.TemporaryDirectory(prefix="bench-server-") as workdir:
        databases = DatabaseFactory(Path(workdir))
        try:
            url = databases("postgres")
            print(
                f"building a synthetic study of {args.assignments} x {args.items} images on "
                "PostgreSQL ..."
            )
            bundle = write_synthetic_bundle(
                Path(workdir) / "bundle", n_adversarial=args.assignments * args.items
            )
            study = import_study(url, bundle, items_per_assignment=args.items)
            register_hits(
                url, study.slug, [Person("BENCH", i).hit for i in range(args.assignments)]
            )
            if args.steps:
                steps_bundle = write_synthetic_bundle(
                    Path(workdir) / "steps", n_adversarial=args.steps * args.items, defense="vat"
                )
                steps_study = import_study(
                    url, steps_bundle, items_per_assignment=args.items, slug="steps"
                )
                register_hits(
                    url, steps_study.slug, [Person("STEP", i).hit for i in range(args.steps)]
                )

            with serve_process(url, workers=args.workers) as server:
                cpu_before, client_before = server.cpu_seconds(), time.process_time()
                machine_before = machine_cpu_seconds()
                recorder, elapsed = replay_study(
                    server.url, study.slug, assignments=args.assignments, clients=args.clients
                )
                recorder.machine_cpu = machine_cpu_seconds() - machine_before
                recorder.server_cpu = server.cpu_seconds() - cpu_before
                recorder.client_cpu = time.process_time() - client_before
                steps = (
                    step_costs(
                        server, steps_study.slug, assignments=args.steps, clients=args.clients
                    )
                    if args.steps
                    else []
                )
            bare_requests = len(recorder.all()) // 2
            bare_command = [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(ROOT / "bench"),
                "server:bare_app",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-access-log",
                "--workers",
                str(args.workers),
            ]
            bare_port_command = _with_free_port(bare_command)
            with serve_process(url, command=bare_port_command, health_path="/bare") as bare_server:
                cpu_before, client_before = bare_server.cpu_seconds(), time.process_time()
                machine_before = machine_cpu_seconds()
                bare_recorder, bare_elapsed = hammer_bare(
                    bare_server.url, requests=bare_requests, clients=args.clients
                )
                bare_recorder.machine_cpu = machine_cpu_seconds() - machine_before
                bare_recorder.server_cpu = bare_server.cpu_seconds() - cpu_before
                bare_recorder.client_cpu = time.process_time() - client_before
            session = session_for(url)
            try:
                of_replay = (
                    select(Label.id)
                    .join(Assignment, Assignment.id == Label.assignment_id)
                    .join(Study, Study.id == Assignment.study_id)
                    .where(Study.slug == study.slug)
                )
                stored = session.scalar(select(func.count()).where(Label.id.in_(of_replay)))
                distinct = session.scalar(
                    select(func.count(func.distinct(Label.stimulus_id))).where(
                        Label.id.in_(of_replay)
                    )
                )
            finally:
                session.close()
        finally:
            databases.drop_all()

    _report(args, recorder, elapsed, bare_recorder, bare_elapsed, stored, distinct)
    _report_steps(steps, bare_recorder)
    return 0


def _with_free_port(command: list[str]) -> list[str]:
    from testkit.servers import free_port

    out = list(command)
    out[out.index("--port") + 1] = str(free_port())
    return out


def _report(args, recorder, elapsed, bare_recorder, bare_elapsed, stored, distinct) -> None:
    latencies = recorder.all()
    throughput = len(latencies) / elapsed
    bare_throughput = len(bare_recorder.all()) / bare_elapsed
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(
        f"study replay: {args.assignments} assignments x {args.items} items, {args.clients} "
        "concurrent clients, "
        f"{args.workers} uvicorn worker(s), PostgreSQL"
    )
    print(f"  total time      {elapsed:.2f} s")
    print(f"  requests        {len(latencies)}  ({throughput:.0f} req/s)")
    print(f"  errors          {len(recorder.errors)}  (target 0)")
    print(f"  latency p50     {p50:.1f} ms")
    print(f"  latency p99     {p99:.1f} ms")
    for step, values in recorder.latency.items():
        print(
            f"    {step:<8} n={len(values):<6} p50 {percentile(values, 0.5) * 1000:6.1f} ms   "
            f"p99 {percentile(values, 0.99) * 1000:6.1f} ms   "
            f"mean {statistics.fmean(values) * 1000:6.1f} ms"
        )
    print(
        f"  labels stored   {stored} for {distinct} distinct images "
        f"(expected {args.assignments * args.items} each)"
    )
    print(
        f"bare FastAPI endpoint, same uvicorn and client: {len(bare_recorder.all())} requests in "
        f"{bare_elapsed:.2f} s ({bare_throughput:.0f} req/s), "
        f"p99 {percentile(bare_recorder.all(), 0.99) * 1000:.1f} ms, "
        f"{len(bare_recorder.errors)} errors"
    )
    print(f"throughput ratio study / bare: {throughput / bare_throughput:.2f}")
    cpu = {}
    for name, rec in (("study", recorder), ("bare", bare_recorder)):
        n = max(1, len(rec.all()))
        cpu[name] = rec.server_cpu / n
        print(
            f"  CPU per request ({name}): server {rec.server_cpu / n * 1000:.2f} ms, client "
            f"{rec.client_cpu / n * 1000:.2f} ms, whole machine {rec.machine_cpu / n * 1000:.2f} ms"
        )
    machine = [rec.machine_cpu / max(1, len(rec.all())) for rec in (recorder, bare_recorder)]
    print(
        f"  whole-machine CPU per request, study / bare: {machine[0] / max(machine[1], 1e-9):.2f}"
        " (50 clients always waiting: latency = clients / throughput, and throughput is bounded"
        " by this on a machine whose cores are all busy)"
    )
    bare_p99 = percentile(bare_recorder.all(), 0.99) * 1000
    p99_ratio, cpu_ratio = p99 / bare_p99, cpu["study"] / max(cpu["bare"], 1e-9)
    print(
        f"goals: errors {len(recorder.errors)} (0: {'met' if not recorder.errors else 'MISSED'}); "
        f"p99 {p99_ratio:.2f}x bare (<= 2: {'met' if p99_ratio <= 2 else 'MISSED'}); "
        f"server CPU per request {cpu_ratio:.2f}x bare "
        f"(<= 1.5: {'met' if cpu_ratio <= 1.5 else 'MISSED'})"
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"  machine load average during the run: {' '.join(load)} on {os.cpu_count()} cores")
    for error in recorder.errors[:5]:
        print(f"  error: {error}")


def _report_steps(steps: list[tuple], bare: Recorder) -> None:
    """Where the server's CPU goes: each step alone, against the bare endpoint's."""
    if not steps:
        return
    bare_cpu = bare.server_cpu / max(1, len(bare.all()))
    print("each step alone (a second study; all requests of a kind in a row), server CPU:")
    for step, recorder, cpu in steps:
        n = max(1, len(recorder.all()))
        print(
            f"    {step:<8} n={n:<6} {cpu / n * 1000:6.2f} ms a request "
            f"({cpu / n / max(bare_cpu, 1e-9):5.2f}x bare)   "
            f"p99 {percentile(recorder.all(), 0.99) * 1000:6.1f} ms   "
            f"errors {len(recorder.errors)}"
        )


if __name__ == "__main__":
    sys.exit(main())
