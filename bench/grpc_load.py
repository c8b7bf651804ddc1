"""gRPC load: N spawned processes, each keeping M unary calls in flight with grpc.aio.

Requests are sent as pre-serialized bytes and answers are not parsed, so the
client's protobuf work stays out of the measurement. Every worker process
opens several channels (one HTTP/2 connection each, not shared through the
global subchannel pool) so that a server with several worker processes
sharing the port gets connections it can spread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import grpc

from bench.server import BenchError
from bench.stats import LoadResult, percentile

MAX_CHANNELS_PER_PROCESS = 64
CALL_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class WorkerResult:
    latencies: bytes  # array('d') of seconds, calls completed inside the window
    errors: int
    cpu_seconds: float


async def _load(
    target: str,
    method: str,
    request: bytes,
    metadata: tuple[tuple[str, str], ...],
    inflight: int,
    conn: Connection,
) -> WorkerResult:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for _ in range(min(inflight, MAX_CHANNELS_PER_PROCESS))
    ]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_SECONDS)
        conn.send("ready")
        start, end = await asyncio.to_thread(conn.recv)
        latencies = array("d")
        errors = 0
        cpu: list[float] = []

        async def caller(index: int) -> None:
            nonlocal errors
            call = channels[index % len(channels)].unary_unary(method)
            while True:
                began = time.monotonic()
                if began >= end:
                    return
                failed = False
                try:
                    await call(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata or None)
                except grpc.aio.AioRpcError:
                    failed = True
                finished = time.monotonic()
                if start <= finished < end:
                    latencies.append(finished - began)
                    errors += failed

        async def cpu_clock() -> None:
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            cpu.append(time.process_time())
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            cpu.append(time.process_time())

        await asyncio.gather(cpu_clock(), *(caller(i) for i in range(inflight)))
        return WorkerResult(latencies.tobytes(), errors, cpu[1] - cpu[0])
    finally:
        for channel in channels:
            await channel.close()


def worker_main(
    conn: Connection,
    target: str,
    method: str,
    request: bytes,
    metadata: tuple[tuple[str, str], ...],
    inflight: int,
) -> None:
    """Entry point of one spawned load process; answers through ``conn``."""
    try:
        result = asyncio.run(_load(target, method, request, metadata, inflight, conn))
        conn.send(result)
    except Exception as exc:  # report any failure to the parent rather than hang it
        conn.send(f"error: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def split(concurrency: int, processes: int) -> list[int]:
    """In-flight calls per process: ``concurrency`` spread over at most ``processes``."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def _spawn(
    target: str,
    method: str,
    request: bytes,
    metadata: tuple[tuple[str, str], ...],
    shares: list[int],
) -> tuple[list[BaseProcess], list[Connection]]:
    """One spawned process per share (spawn, not fork: this process has used grpc)."""
    ctx = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    pipes: list[Connection] = []
    for inflight in shares:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=worker_main,
            args=(child_end, target, method, request, metadata, inflight),
            daemon=True,
        )
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        workers.append(proc)
    return workers, pipes


def _receive_all(pipes: list[Connection], timeout: float, what: str) -> list[object]:
    messages: list[object] = []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise BenchError(f"a gRPC load process did not {what}")
        messages.append(pipe.recv())
    return messages


def run_grpc_load(
    target: str,
    method: str,
    request: bytes,
    *,
    concurrency: int,
    processes: int,
    seconds: float,
    warmup: float,
    metadata: tuple[tuple[str, str], ...] = (),
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> LoadResult:
    """``warmup`` seconds of untimed load, then ``seconds`` measured."""
    shares = split(concurrency, processes)
    workers, pipes = _spawn(target, method, request, metadata, shares)
    try:
        for message in _receive_all(pipes, READY_TIMEOUT_SECONDS + 30, "start"):
            if message != "ready":
                raise BenchError(f"gRPC load process: {message}")
        start = time.monotonic() + warmup
        end = start + seconds
        for pipe in pipes:
            pipe.send((start, end))
        time.sleep(max(0.0, start - time.monotonic()))
        if on_start:
            on_start()
        time.sleep(max(0.0, end - time.monotonic()))
        if on_end:
            on_end()
        results: list[WorkerResult] = []
        for message in _receive_all(pipes, CALL_TIMEOUT_SECONDS + 30, "report"):
            if not isinstance(message, WorkerResult):
                raise BenchError(f"gRPC load process: {message}")
            results.append(message)
    finally:
        for proc in workers:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    merged = array("d")
    for result in results:
        merged.frombytes(result.latencies)
    ordered = sorted(merged)
    return LoadResult(
        requests=len(ordered),
        errors=sum(r.errors for r in results),
        seconds=seconds,
        p50_ms=percentile(ordered, 50) * 1000,
        p90_ms=percentile(ordered, 90) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        max_ms=(ordered[-1] * 1000) if ordered else 0.0,
        generator_cpu_seconds=sum(r.cpu_seconds for r in results),
        generator=f"grpc.aio {len(shares)} proc x {shares[0]} in flight",
    )
