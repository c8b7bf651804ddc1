"""The server under test, started as a user would: ``m2mauth migrate``,
``m2mauth admin-key create``, then ``m2mauth serve`` as a subprocess with
production settings (no --dev) on a fresh database.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import procfs

START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 2.0


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def m2mauth_executable() -> str:
    """``BENCH_M2MAUTH`` (another checkout's server, e.g. an older commit, under this
    harness), else the ``m2mauth`` script beside the running interpreter (the venv's),
    else on PATH."""
    chosen = os.environ.get("BENCH_M2MAUTH", "").strip()
    if chosen:
        if not Path(chosen).exists():
            raise BenchError(f"BENCH_M2MAUTH={chosen}: no such file")
        return chosen
    beside = Path(sys.executable).parent / "m2mauth"
    if beside.exists():
        return str(beside)
    found = shutil.which("m2mauth")
    if found is None:
        raise BenchError("no m2mauth executable: run `make bench` (it installs the venv)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_supports(exe: str, option: str) -> bool:
    """Whether this m2mauth's ``serve`` has ``option`` (older commits lack some)."""
    result = subprocess.run(  # noqa: S603 - our own executable, fixed arguments
        [exe, "serve", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    return option in result.stdout


def serve_supports_processes(exe: str) -> bool:
    """Whether this m2mauth has ``serve --processes`` (several worker processes)."""
    return serve_supports(exe, "--processes")


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any M2MAUTH_* setting of the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2MAUTH_")}
    env.update(extra)
    return env


# --- databases ----------------------------------------------------------------


def postgres_reachable(admin_url: str) -> str | None:
    """None if the server answers, else why not (one line)."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url``: created now, dropped after."""
    name = f"m2mauth_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database(directory: Path, label: str) -> Iterator[str]:
    path = directory / f"m2mauth-{label}.db"
    yield f"sqlite:///{path}"


# --- the server -----------------------------------------------------------------


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    grpc_target: str
    http_url: str
    issuer: str
    admin_key: str
    algorithm: str
    processes_option: int | None  # the --processes given, None if serve has no such option
    log_path: Path
    command: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree(self) -> list[int]:
        return procfs.process_tree(self.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"the server exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _run_cli(exe: str, args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own executable
        [exe, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if result.returncode != 0:
        raise BenchError(
            f"`m2mauth {' '.join(args[:2])}` failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=2) as response:  # noqa: S310 - our http:// URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BenchError(f"the server was not ready after {START_TIMEOUT_SECONDS:.0f} s")


@contextmanager
def running_server(
    database_url: str,
    algorithm: str,
    log_dir: Path,
    *,
    processes: int | None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    """Migrate ``database_url``, create an admin key, serve, and stop on exit."""
    exe = m2mauth_executable()
    root_key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = _clean_env({"M2MAUTH_DATABASE_URL": database_url, "M2MAUTH_ROOT_KEY": root_key})
    _run_cli(exe, ["migrate", "--database-url", database_url], env)
    admin_out = _run_cli(exe, ["admin-key", "create", "--database-url", database_url], env)
    admin_key = admin_out.strip().splitlines()[-1].strip()
    grpc_port, http_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{http_port}"
    command = [
        exe,
        "serve",
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--issuer",
        issuer,
        "--signing-algorithm",
        algorithm,
        "--grace-period-seconds",
        str(STOP_GRACE_SECONDS),
    ]
    # Port 0: no metrics listener. A server from before the metrics has none anyway.
    if serve_supports(exe, "--metrics-port"):
        command += ["--metrics-port", "0"]
    if processes is not None:
        command += ["--processes", str(processes)]
    command += list(extra_args)
    log_path = log_dir / f"serve-{algorithm}-{secrets.token_hex(3)}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own executable
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = RunningServer(
        process=process,
        grpc_target=f"127.0.0.1:{grpc_port}",
        http_url=issuer,
        issuer=issuer,
        admin_key=admin_key,
        algorithm=algorithm,
        processes_option=processes,
        log_path=log_path,
        command=[Path(command[0]).name, *command[1:]],
    )
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def _stop(server: RunningServer) -> None:
    """SIGTERM the server; after its grace period, SIGKILL what is left of its tree."""
    tree = [(pid, procfs.start_ticks(pid)) for pid in server.tree()]
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=STOP_GRACE_SECONDS + 15)
        except subprocess.TimeoutExpired:
            print("  note: the server did not stop on SIGTERM; killing it", flush=True)
    for pid, started in reversed(tree):  # only the processes this benchmark started
        if started is not None and procfs.start_ticks(pid) == started:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if server.process.poll() is None:
        server.process.wait(timeout=10)
