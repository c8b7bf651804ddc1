"""Settings: one source of truth, documented in the README."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from m2mauth.config import SETTINGS, CertificateFiles, Settings
from tests.settings_defaults import setting_default

README = Path(__file__).resolve().parents[2] / "README.md"
ISSUER = "https://auth.example.com"
# The issuer a setting-less server derives names its default HTTP port.
HTTP_PORT = setting_default("http_port")


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"| `{setting.flag}` | `{setting.envvar}` |" in text, setting.name


def test_dev_defaults_put_everything_under_the_data_dir() -> None:
    s = Settings(dev=True, data_dir=Path("var")).with_defaults()
    assert s.database_url == "sqlite:///var/m2mauth.db"
    assert s.root_key_file == "var/root.key"
    assert s.issuer == f"http://127.0.0.1:{HTTP_PORT}"
    assert s.audience == s.issuer
    assert s.problems() == []


def test_production_settings_say_what_is_missing() -> None:
    problems = Settings().with_defaults().problems()
    assert any("no database" in p for p in problems)
    assert any("no root key" in p for p in problems)
    assert any("no issuer" in p and "every replica" in p for p in problems)
    bad = Settings(
        database_url="sqlite:///x",
        root_key="k",
        issuer=ISSUER,
        signing_algorithm="HS256",
        log_level="LOUD",
    ).with_defaults()
    assert len(bad.problems()) == 2


def test_outside_dev_the_issuer_is_chosen_by_the_operator_and_is_an_https_url() -> None:
    """Replicas that default to their own host:port each sign with another issuer
    (RFC 9068 section 2.2); RFC 8414 section 2 says what an issuer URL is."""
    base = Settings(database_url="sqlite:///x", root_key="k")
    [missing] = base.with_defaults().problems()
    assert missing.startswith("no issuer: set --issuer / M2MAUTH_ISSUER")
    assert dataclasses.replace(base, issuer=ISSUER).with_defaults().problems() == []
    assert dataclasses.replace(base, dev=True).with_defaults().problems() == []
    for issuer, says in [
        ("auth.example.com", "absolute https URL"),
        ("ftp://auth.example.com", "absolute https URL"),
        ("https://auth.example.com/?tenant=1", "no query or fragment"),
        ("https://auth.example.com/#x", "no query or fragment"),
        ("http://auth.example.com", "must use https"),
    ]:
        [problem] = dataclasses.replace(base, issuer=issuer).with_defaults().problems()
        assert says in problem, (issuer, problem)
    # Plain http: on one machine, or anywhere while trying it out.
    for ok in (
        dataclasses.replace(base, issuer="http://127.0.0.1:9000"),
        dataclasses.replace(base, issuer="http://localhost:9000/auth"),
        dataclasses.replace(base, issuer="http://auth.lan", dev=True),
    ):
        assert ok.with_defaults().problems() == [], ok.issuer


def test_a_database_url_m2mauth_cannot_open_is_named_with_the_fix() -> None:
    for url in ("mysql://root@db/m2m", "notaurl"):
        settings = Settings(database_url=url, root_key="k", issuer=ISSUER)
        [problem] = settings.with_defaults().problems()
        assert problem.startswith("--database-url: unsupported database URL")
        assert "postgresql://" in problem
        assert "sqlite:///" in problem
    demo = Settings(database_url="memory://demo", root_key="k", dev=True)
    assert demo.with_defaults().problems() == []
    production = dataclasses.replace(demo, dev=False, issuer=ISSUER)
    [needs_dev] = production.with_defaults().problems()
    assert "add --dev" in needs_dev
    [many] = dataclasses.replace(demo, processes=2).with_defaults().problems()
    assert "--processes 1" in many


def test_every_setting_is_declared_once_with_its_help() -> None:
    # SETTINGS is read off the Settings dataclass: a field without help is not a setting.
    declared = {f.name for f in dataclasses.fields(Settings)} - {
        "dev",
        "data_dir",
        "issuer_is_default",
    }
    assert {s.name for s in SETTINGS} == declared
    defaults = Settings()
    for setting in SETTINGS:
        assert setting.help
        assert getattr(defaults, setting.name) == setting.default
        assert isinstance(setting.default, setting.type)


def test_tls_pairs_override_per_listener_and_make_the_issuer_https() -> None:
    shared = Settings(database_url="sqlite:///x", root_key="k", tls_cert="c", tls_key="k")
    assert shared.grpc_tls() == shared.http_tls() == CertificateFiles("c", "k")
    assert shared.with_defaults().issuer == f"https://127.0.0.1:{HTTP_PORT}"
    own = dataclasses.replace(shared, grpc_tls_cert="g", grpc_tls_key="gk")
    assert own.grpc_tls() == CertificateFiles("g", "gk")
    assert own.http_tls() == CertificateFiles("c", "k")
    assert Settings().with_defaults().issuer == f"http://127.0.0.1:{HTTP_PORT}"


def test_tls_settings_that_cannot_work_are_named() -> None:
    base = Settings(database_url="sqlite:///x", root_key="k", issuer=ISSUER)
    [half] = dataclasses.replace(base, tls_cert="c").problems()
    assert half == "--tls-cert and --tls-key go together: set both"
    [no_tls] = dataclasses.replace(base, tls_client_ca="ca.pem").problems()
    assert no_tls.startswith("--tls-client-ca needs TLS on gRPC")


def test_plaintext_is_refused_off_loopback_unless_allowed_or_dev() -> None:
    base = Settings(database_url="sqlite:///x", root_key="k", issuer=ISSUER)
    assert base.problems() == []  # loopback: nobody else can listen in
    for host in ("0.0.0.0", "", "::", "10.0.0.5", "auth.internal"):
        [problem] = dataclasses.replace(base, grpc_host=host).problems()
        assert "but gRPC has no TLS" in problem
        assert problem.startswith(f"--grpc-host {host or '(all addresses)'} is reachable")
        assert "--allow-plaintext" in problem
    for host in ("localhost", "127.0.0.2", "::1"):
        assert dataclasses.replace(base, http_host=host).problems() == []
    public = dataclasses.replace(base, grpc_host="0.0.0.0", http_host="0.0.0.0")
    assert len(public.problems()) == 2
    assert dataclasses.replace(public, allow_plaintext=True).problems() == []
    with_tls = dataclasses.replace(public, tls_cert="c", tls_key="k")
    assert with_tls.problems() == []
    dev = dataclasses.replace(public, dev=True)
    assert dev.problems() == []
    assert len(dev.plaintext_warnings()) == 2


def test_the_edge_needs_tls_to_reach_another_machine() -> None:
    edge = Settings(upstream="core.internal:7443")
    [problem] = edge.edge_problems()
    assert "--upstream core.internal:7443 is another machine" in problem
    assert edge.upstream_target() == ("core.internal:7443", False)
    with_ca = dataclasses.replace(edge, upstream_ca="ca.pem")
    assert with_ca.edge_problems() == []
    assert with_ca.upstream_target() == ("core.internal:7443", True)
    system_roots = Settings(upstream="https://core.internal:7443")
    assert system_roots.upstream_target() == ("core.internal:7443", True)
    assert system_roots.edge_problems() == []
    assert Settings(upstream="127.0.0.1:7443").edge_problems() == []
    [missing] = Settings().edge_problems()
    assert missing.startswith("--upstream must be host:port")
