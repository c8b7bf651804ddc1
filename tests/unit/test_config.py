"""Settings: one source of truth, documented in the README."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from m2mauth.config import SETTINGS, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"| `{setting.flag}` | `{setting.envvar}` |" in text, setting.name


def test_dev_defaults_put_everything_under_the_data_dir() -> None:
    s = Settings(dev=True, data_dir=Path("var")).with_defaults()
    assert s.database_url == "sqlite:///var/m2mauth.db"
    assert s.root_key_file == "var/root.key"
    assert s.issuer == "http://127.0.0.1:8080"
    assert s.audience == s.issuer
    assert s.problems() == []


def test_production_settings_say_what_is_missing() -> None:
    problems = Settings().with_defaults().problems()
    assert any("no database" in p for p in problems)
    assert any("no root key" in p for p in problems)
    bad = Settings(
        database_url="sqlite:///x", root_key="k", signing_algorithm="HS256", log_level="LOUD"
    ).with_defaults()
    assert len(bad.problems()) == 2


def test_a_database_url_m2mauth_cannot_open_is_named_with_the_fix() -> None:
    for url in ("mysql://root@db/m2m", "notaurl"):
        [problem] = Settings(database_url=url, root_key="k").with_defaults().problems()
        assert problem.startswith("--database-url: unsupported database URL")
        assert "postgresql://" in problem
        assert "sqlite:///" in problem
    demo = Settings(database_url="memory://demo", root_key="k", dev=True)
    assert demo.with_defaults().problems() == []
    [needs_dev] = dataclasses.replace(demo, dev=False).with_defaults().problems()
    assert "add --dev" in needs_dev
    [many] = dataclasses.replace(demo, processes=2).with_defaults().problems()
    assert "--processes 1" in many


def test_every_setting_is_declared_once_with_its_help() -> None:
    # SETTINGS is read off the Settings dataclass: a field without help is not a setting.
    declared = {f.name for f in dataclasses.fields(Settings)} - {"dev", "data_dir"}
    assert {s.name for s in SETTINGS} == declared
    defaults = Settings()
    for setting in SETTINGS:
        assert setting.help
        assert getattr(defaults, setting.name) == setting.default
        assert isinstance(setting.default, setting.type)
