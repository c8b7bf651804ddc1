"""The whole benchmark: ceilings, then per database and algorithm a fresh server and its cases."""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from bench import procfs
from bench.cases import Case, Measurement
from bench.ceilings import Rate, crypto_rates, verify_kit_rate
from bench.grpc_load import run_grpc_load
from bench.h2load import ensure_h2load, h2load_version, run_h2load, write_request_file
from bench.provision import Client, KeyedClient, provision, provision_keyed
from bench.report import (
    HEADER,
    TargetResult,
    evaluate_targets,
    print_report,
    row,
    write_json,
)
from bench.server import (
    BenchError,
    RunningServer,
    m2mauth_executable,
    postgres_database,
    postgres_reachable,
    running_server,
    serve_supports_processes,
    sqlite_database,
)
from bench.settings import BenchSettings
from bench.stats import LoadResult
from bench.wrk import ensure_wrk, run_wrk, wrk_version
from m2mauth.v1 import token_service_pb2 as token_pb

SERVICE = "/m2mauth.v1.TokenService/"
HTTP_PATHS = {
    "issue": "/oauth2/token",
    "issue-key": "/oauth2/token",
    "introspect": "/oauth2/introspection",
    "jwks": "/oauth2/jwks",
}
GRPC_METHODS = {"issue": "IssueToken", "introspect": "Introspect", "jwks": "GetJwks"}


# Requests per second that a private_key_jwt case must have assertions for: each is
# single use, so the load generator needs one per request (more than the server
# can answer; a shortfall would show as errors, never as a faster server).
KEYED_ASSERTIONS_PER_SECOND = 10_000


def plan(settings: BenchSettings, backend: str, algorithm: str, first: bool) -> list[Case]:
    """Issuance (with a client secret, and with a key: private_key_jwt over HTTP)
    and introspection everywhere; JWKS (which reads no store and signs nothing)
    once, on the first server of the run."""
    operations = ["issue", "issue-key", "introspect"] + (["jwks"] if first else [])
    cases = [
        Case(backend, algorithm, operation, transport, concurrency)
        for operation in operations
        for transport in ("http", "grpc")
        for concurrency in settings.concurrencies
        # h2load sends one request body over and over: a single-use assertion can't.
        if not (operation == "issue-key" and transport == "grpc")
    ]
    return [case for case in cases if settings.wants(case.name)]


@dataclass(frozen=True, slots=True)
class Tools:
    wrk: str
    h2load: str | None  # None: gRPC load with grpc.aio (BENCH_GRPC_LOAD=grpc.aio)
    workdir: Path  # request files and h2load's per-request log


class Window:
    """Server CPU between on_start and on_end, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start: procfs.TreeSample | None = None
        self.end: procfs.TreeSample | None = None

    def on_start(self) -> None:
        self.start = procfs.TreeSample.take(self.pid)

    def on_end(self) -> None:
        self.end = procfs.TreeSample.take(self.pid)

    def cpu_seconds(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end.cpu_since(self.start)


def _http_request(case: Case, client: Client) -> tuple[str, str, str]:
    """(method, form body, Authorization) of the case's HTTP request."""
    if case.operation == "issue":
        return "POST", "grant_type=client_credentials", client.basic_authorization()
    if case.operation == "introspect":
        body = urllib.parse.urlencode({"token": client.token})
        return "POST", body, client.basic_authorization()
    if case.operation == "issue-key":
        return "POST", "", ""  # the bodies come from a file: one fresh assertion each
    return "GET", "", ""


def _grpc_request(case: Case, client: Client) -> bytes:
    if case.operation == "issue":
        return token_pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_id=client.client_id,
            client_secret=client.client_secret,
        ).SerializeToString()
    if case.operation == "introspect":
        return token_pb.IntrospectRequest(
            token=client.token, client_id=client.client_id, client_secret=client.client_secret
        ).SerializeToString()
    return token_pb.GetJwksRequest().SerializeToString()


VERIFY_CALLS = 3


def grpc_answer_bytes(target: str, method: str, request: bytes) -> int:
    """Call ``method`` with the exact request bytes h2load will send, with grpcio, and
    return the size of its framed answer (the same on every call, or the count of OK
    calls under h2load, which relies on it, would be wrong)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        sizes: set[int] = set()
        for _ in range(VERIFY_CALLS):
            try:
                answer: bytes = call(request, timeout=10)
            except grpc.RpcError as exc:
                raise BenchError(f"{method} with the bench's request failed: {exc}") from exc
            sizes.add(len(answer))
    if len(sizes) != 1:
        raise BenchError(f"{method} answered with different sizes {sorted(sizes)}")
    return 5 + sizes.pop()  # the answer's 5-byte gRPC prefix counts as DATA too


def _run_h2load_case(
    settings: BenchSettings,
    case: Case,
    server: RunningServer,
    client: Client,
    h2load: str,
    workdir: Path,
    window: Window,
) -> LoadResult:
    method = SERVICE + GRPC_METHODS[case.operation]
    request = _grpc_request(case, client)
    answer_bytes = grpc_answer_bytes(server.grpc_target, method, request)
    body = write_request_file(workdir / f"{case.operation}.grpc", request)
    url = f"http://{server.grpc_target}{method}"
    common: dict[str, Any] = {"answer_bytes": answer_bytes, "concurrency": case.concurrency}
    run_h2load(h2load, url, body, seconds=settings.warmup, **common)
    load = run_h2load(
        h2load,
        url,
        body,
        seconds=settings.duration,
        log=workdir / "h2load.log",
        on_start=window.on_start,
        on_end=window.on_end,
        **common,
    )
    # Still OK after the load (no throttling or failure that the sizes could hide).
    if grpc_answer_bytes(server.grpc_target, method, request) != answer_bytes:
        raise BenchError(f"{method}: the answer's size changed during the load")
    return load


def run_case(
    settings: BenchSettings,
    case: Case,
    server: RunningServer,
    client: Client,
    tools: Tools,
    sign_per_core: float | None,
    keyed: KeyedClient | None = None,
) -> Measurement:
    window = Window(server.pid)
    load: LoadResult
    if case.transport == "http":
        method, body, authorization = _http_request(case, client)
        url = server.http_url + HTTP_PATHS[case.operation]
        common: dict[str, Any] = {
            "concurrency": case.concurrency,
            "method": method,
            "body": body,
            "authorization": authorization,
        }
        warmup_bodies = measured_bodies = None
        if case.operation == "issue-key":
            if keyed is None:
                raise BenchError(f"{case.name}: no private_key_jwt application provisioned")
            warmup_bodies, measured_bodies = (
                keyed.write_forms(
                    tools.workdir / f"assertions-{part}.txt",
                    math.ceil(seconds * KEYED_ASSERTIONS_PER_SECOND) + case.concurrency,
                )
                for part, seconds in (("warmup", settings.warmup), ("measured", settings.duration))
            )
        run_wrk(tools.wrk, url, seconds=settings.warmup, body_file=warmup_bodies, **common)
        load = run_wrk(
            tools.wrk,
            url,
            seconds=settings.duration,
            body_file=measured_bodies,
            on_start=window.on_start,
            on_end=window.on_end,
            **common,
        )
    elif tools.h2load is not None:
        load = _run_h2load_case(settings, case, server, client, tools.h2load, tools.workdir, window)
    else:
        load = run_grpc_load(
            server.grpc_target,
            SERVICE + GRPC_METHODS[case.operation],
            _grpc_request(case, client),
            concurrency=case.concurrency,
            processes=1 if case.concurrency == 1 else settings.grpc_client_processes,
            seconds=settings.duration,
            warmup=settings.warmup,
            on_start=window.on_start,
            on_end=window.on_end,
        )
    server.check_alive()
    memory = procfs.tree_memory(server.pid)
    return Measurement(
        case=case,
        load=load,
        server_cpu_seconds=window.cpu_seconds(),
        server_processes=len(memory),
        server_vmhwm_kib={pid: m.get("VmHWM", 0) for pid, m in memory.items()},
        cores=os.cpu_count() or 1,
        sign_per_core=sign_per_core if case.operation == "issue" else None,
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _rate_json(rate: Rate) -> dict[str, float]:
    return {
        "per_second": round(rate.per_second, 1),
        "per_cpu_second": round(rate.per_cpu_second, 1),
        "operations": rate.operations,
        "seconds": round(rate.seconds, 3),
    }


def _database(
    backend: str, settings: BenchSettings, tmp: Path, algorithm: str
) -> AbstractContextManager[str]:
    if backend == "postgres":
        return postgres_database(settings.postgres_url)
    return sqlite_database(tmp, algorithm)


def _estimate_seconds(settings: BenchSettings, cases: int) -> float:
    per_case = settings.duration + settings.warmup + 1.5
    return cases * per_case + len(settings.algorithms) * 4 * settings.ceiling_duration + 30


def _server_source() -> str:
    if os.environ.get("BENCH_M2MAUTH", "").strip():
        return "BENCH_M2MAUTH (another checkout's m2mauth)"
    return "this checkout's"


def _banner(settings: BenchSettings, processes: int | None) -> Iterator[str]:
    yield (
        f"m2mauth benchmark: {settings.duration:g} s per case (+{settings.warmup:g} s warm-up), "
        f"concurrency {', '.join(map(str, settings.concurrencies))}, "
        f"{os.cpu_count()} cores ({procfs.cpu_model()})"
    )
    if processes is None:
        yield "server: one process (this m2mauth has no `serve --processes`)"
    else:
        yield f"server: `serve --processes {processes}`"
    yield f"server executable: {_server_source()}; gRPC load: {settings.grpc_load}"


def _usable_backends(settings: BenchSettings, notes: list[str]) -> list[str]:
    """The backends to run; PostgreSQL is skipped, with a note, when unreachable."""
    backends: list[str] = []
    for backend in settings.backends:
        if backend == "postgres":
            why = postgres_reachable(settings.postgres_url)
            if why is not None:
                note = f"PostgreSQL skipped: {settings.postgres_url.rpartition('@')[2]}: {why}"
                print(note, flush=True)
                notes.append(note)
                continue
        elif backend != "sqlite":
            raise BenchError(f"unknown backend {backend!r} in BENCH_BACKENDS (sqlite, postgres)")
        backends.append(backend)
    return backends


class Run:
    """One benchmark run: what it measured so far."""

    def __init__(self, settings: BenchSettings, tools: Tools, processes: int | None) -> None:
        self.settings = settings
        self.tools = tools
        self.processes = processes
        self.rates: dict[str, Rate] = {}
        self.results: list[Measurement] = []
        self.servers: list[dict[str, Any]] = []

    def ceilings(self) -> None:
        print(
            "raw signing/verifying ceilings (cryptography, this process, one core)...", flush=True
        )
        for algorithm in self.settings.algorithms:
            for kind, rate in crypto_rates(algorithm, self.settings.ceiling_duration).items():
                self.rates[f"cryptography {algorithm} {kind}"] = rate

    def one_server(self, backend: str, algorithm: str, cases: list[Case], tmp: Path) -> None:
        """A fresh database and server for ``algorithm``; the verify kit rate; the cases."""
        verify_key = f"m2mauth.verify {algorithm} verify"
        if not cases and verify_key in self.rates:
            return
        print(f"\n== {backend}, {algorithm}: fresh database, server starting", flush=True)
        with (
            _database(backend, self.settings, tmp, algorithm) as url,
            running_server(
                url,
                algorithm,
                tmp,
                processes=self.processes,
                extra_args=self.settings.server_args,
            ) as server,
        ):
            try:
                client = provision(server)
                keyed = (
                    provision_keyed(server)
                    if any(c.operation == "issue-key" for c in cases)
                    else None
                )
                self._record_server(server, backend)
                if verify_key not in self.rates:
                    self.rates[verify_key] = verify_kit_rate(
                        server.issuer,
                        server.http_url + "/oauth2/jwks",
                        client.token,
                        self.settings.ceiling_duration,
                    )
                if cases:
                    print(HEADER, flush=True)
                sign = self.rates.get(f"cryptography {algorithm} sign")
                for case in cases:
                    measured = run_case(
                        self.settings,
                        case,
                        server,
                        client,
                        self.tools,
                        sign.per_second if sign else None,
                        keyed,
                    )
                    self.results.append(measured)
                    print(row(measured), flush=True)
            except BenchError:
                print(f"server log (tail):\n{server.log_tail()}", file=sys.stderr)
                raise

    def _record_server(self, server: RunningServer, backend: str) -> None:
        idle = procfs.tree_memory(server.pid)
        self.servers.append(
            {
                "backend": backend,
                "algorithm": server.algorithm,
                "command": server.command,
                "processes": len(idle),
                "idle_rss_mib": [round(m.get("VmRSS", 0) / 1024, 1) for m in idle.values()],
            }
        )

    def document(
        self, targets: list[TargetResult], notes: list[str], elapsed: float
    ) -> dict[str, Any]:
        return {
            "meta": {
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                "cpu_model": procfs.cpu_model(),
                "cores": os.cpu_count() or 1,
                "cores_note": "os.cpu_count(), taken as the cores available to the server "
                "(the load generators run on the same machine)",
                "python": platform.python_version(),
                "platform": platform.platform(),
                "versions": {
                    name: _version(name)
                    for name in (
                        "m2mauth",
                        "grpcio",
                        "cryptography",
                        "pyjwt",
                        "uvicorn",
                        "starlette",
                    )
                },
                "wrk": wrk_version(self.tools.wrk),
                "grpc_load": (
                    h2load_version(self.tools.h2load) if self.tools.h2load else "grpc.aio"
                ),
                "m2mauth_executable": _server_source(),
                "serve_processes_option": self.processes,
                "elapsed_seconds": round(elapsed, 1),
            },
            "settings": self.settings.as_json(),
            "servers": self.servers,
            "single_process_rates": {name: _rate_json(r) for name, r in self.rates.items()},
            "cases": [m.as_json() for m in self.results],
            "targets": [
                {"target": t.target, "where": t.where, "measured": t.measured, "met": t.met}
                for t in targets
            ],
            "notes": notes,
        }


def main() -> int:
    settings = BenchSettings.from_env()
    notes: list[str] = []
    started = time.monotonic()
    try:
        wrk = ensure_wrk()
        h2load = ensure_h2load() if settings.grpc_load == "h2load" else None
        exe = m2mauth_executable()
        processes = settings.processes if serve_supports_processes(exe) else None
        if processes is None:
            notes.append("m2mauth serve has no --processes option: the server ran as one process")
        for line in _banner(settings, processes):
            print(line, flush=True)
        backends = _usable_backends(settings, notes)
        plans = [
            (backend, algorithm, plan(settings, backend, algorithm, i == 0 and j == 0))
            for i, backend in enumerate(backends)
            for j, algorithm in enumerate(settings.algorithms)
        ]
        planned = sum(len(cases) for _, _, cases in plans)
        minutes = _estimate_seconds(settings, planned) / 60
        print(f"{planned} cases, about {minutes:.1f} min", flush=True)
        with tempfile.TemporaryDirectory(prefix="m2mauth-bench-") as tmp:
            run = Run(settings, Tools(wrk, h2load, Path(tmp)), processes)
            run.ceilings()
            for backend, algorithm, cases in plans:
                run.one_server(backend, algorithm, cases, Path(tmp))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1

    targets = evaluate_targets(run.results, backends, max(settings.concurrencies))
    document = run.document(targets, notes, time.monotonic() - started)
    print_report(run.results, document["single_process_rates"], targets)
    write_json(settings.output, document)
    print(f"\nwrote {settings.output} ({document['meta']['elapsed_seconds']} s)")
    for note in notes:
        print(f"note: {note}")
    return 0
