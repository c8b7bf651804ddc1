"""`m2mauth serve` as a user runs it: a real process, real sockets, real SQLite."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import resources_pb2 as res
from tests.grpc.conftest import bearer, make_stubs

M2MAUTH = [sys.executable, "-m", "m2mauth.cli"]


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    admin_key: str | None
    stdout: list[str]
    http_url: str = ""
    metrics_urls: tuple[str, ...] = ()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2MAUTH_")}
    env.update(extra)
    return env


def start(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> Served:
    """``m2mauth serve ARGS`` (with --metrics-port 0 unless ARGS name one), once it serves;
    ``cpus``: the CPUs it may run on, as a container's cpuset would allow."""
    if "--metrics-port" not in args:
        args = [*args, "--metrics-port", "0"]
    taskset = [] if cpus is None else ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus)))]
    process = subprocess.Popen(
        [*taskset, *M2MAUTH, "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or clean_env(),
    )
    assert process.stdout is not None
    lines: list[str] = []
    port = 0
    admin_key = None
    http_url = ""
    metrics_urls: tuple[str, ...] = ()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if m := re.search(r"serving gRPC on 127\.0\.0\.1:(\d+)", line):
            port = int(m.group(1))
        if m := re.search(r"OAuth over HTTP on (https?://[^\s,]+)", line):
            http_url = m.group(1)
        if m := re.search(r"Prometheus metrics on http://([^:]+):PORT/metrics[^:]*: (.*)", line):
            host, ports = m.groups()
            metrics_urls = tuple(f"http://{host}:{p}/metrics" for p in ports.split(", "))
        elif m := re.search(r"Prometheus metrics on (http://\S+)", line):
            metrics_urls = (m.group(1),)
        if m := re.search(r"export M2MAUTH_ADMIN_KEY=(\S+)", line):
            admin_key = m.group(1)
        if line.startswith("Press Ctrl+C to stop"):
            break
    assert port, f"server did not start: {lines}\n{process.stderr.read() if process.stderr else ''}"
    return Served(process, port, admin_key, lines, http_url, metrics_urls)


@dataclass
class Client:
    org_id: str
    client_id: str
    secret: str


def new_client(
    served: Served,
    scopes: tuple[str, ...] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> Client:
    """An organization, an application in it and a secret, made over gRPC (over TLS
    with ``credentials``)."""
    assert served.admin_key, served.stdout
    md = bearer(served.admin_key)
    target = f"127.0.0.1:{served.port}"
    with (
        grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    ) as channel:
        stubs = make_stubs(channel)
        org = stubs.orgs.CreateOrganization(
            org_pb.CreateOrganizationRequest(organization=res.Organization(name="Acme")),
            metadata=md,
        ).organization
        app = stubs.apps.CreateApplication(
            app_pb.CreateApplicationRequest(
                application=res.Application(organization_id=org.id, name="svc", scopes=scopes)
            ),
            metadata=md,
        ).application
        secret = stubs.apps.CreateClientSecret(
            app_pb.CreateClientSecretRequest(application_id=app.id), metadata=md
        ).secret
    return Client(org.id, app.client_id, secret)


def stop(served: Served) -> tuple[int, str]:
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(timeout=30)
    return code, served.process.stderr.read() if served.process.stderr else ""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_dev_server_first_start_prints_an_admin_key_that_works(workdir: Path) -> None:
    served = start(["--dev", "--grpc-port", "0", "--http-port", "0"], workdir)
    try:
        assert served.admin_key
        assert served.admin_key.startswith("m2m_ak_")
        assert (workdir / "var" / "m2mauth.db").exists()
        root_key = workdir / "var" / "root.key"
        assert root_key.stat().st_mode & 0o777 == 0o600
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            stubs = make_stubs(channel)
            health = stubs.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            md = bearer(served.admin_key)
            org = stubs.orgs.CreateOrganization(
                org_pb.CreateOrganizationRequest(organization=res.Organization(name="Acme")),
                metadata=md,
            ).organization
            other = stubs.orgs.CreateOrganization(
                org_pb.CreateOrganizationRequest(organization=res.Organization(name="Other")),
                metadata=md,
            ).organization
            app = stubs.apps.CreateApplication(
                app_pb.CreateApplicationRequest(
                    application=res.Application(
                        organization_id=other.id, name="theirs", scopes=["read"]
                    )
                ),
                metadata=md,
            ).application
            secret = stubs.apps.CreateClientSecret(
                app_pb.CreateClientSecretRequest(application_id=app.id), metadata=md
            )
            assert secret.secret.startswith("m2m_cs_")
            listed = stubs.apps.ListApplications(app_pb.ListApplicationsRequest(), metadata=md)
            assert [a.id for a in listed.applications] == [app.id]

            # A key scoped to "Acme", made with the local bootstrap command.
            made = subprocess.run(
                [*M2MAUTH, "admin-key", "create", "--dev", "--organization", org.id],
                cwd=workdir,
                capture_output=True,
                text=True,
                env=clean_env(),
                check=True,
            )
            org_key = made.stdout.strip().splitlines()[-1]
            assert org_key.startswith("m2m_ak_")
            with pytest.raises(grpc.RpcError) as info:
                stubs.apps.GetApplication(
                    app_pb.GetApplicationRequest(id=app.id), metadata=bearer(org_key)
                )
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            mine = stubs.apps.ListApplications(
                app_pb.ListApplicationsRequest(), metadata=bearer(org_key)
            )
            assert list(mine.applications) == []
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr
    assert "shutting down" in stderr
    assert "Traceback" not in stderr

    again = start(["--dev", "--grpc-port", "0", "--http-port", "0"], workdir)
    try:
        assert again.admin_key is None, "a second start must not mint another admin key"
    finally:
        stop(again)


def test_serve_refuses_an_unmigrated_database(workdir: Path) -> None:
    env = clean_env(
        M2MAUTH_DATABASE_URL=f"sqlite:///{workdir / 'empty.db'}",
        M2MAUTH_ROOT_KEY="A" * 43 + "=",
        M2MAUTH_ISSUER="https://auth.example.com",
    )
    result = subprocess.run(
        [*M2MAUTH, "serve", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: cannot start: database is not migrated: run `m2mauth migrate`\n"
    )

    migrated = subprocess.run(
        [*M2MAUTH, "migrate"], cwd=workdir, capture_output=True, text=True, env=env, check=False
    )
    assert migrated.returncode == 0, migrated.stderr


def test_production_settings_require_a_root_key(workdir: Path) -> None:
    env = clean_env(M2MAUTH_DATABASE_URL=f"sqlite:///{workdir / 'x.db'}")
    result = subprocess.run(
        [*M2MAUTH, "serve"], cwd=workdir, capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 2
    assert "no root key" in result.stderr
    assert "Traceback" not in result.stderr
