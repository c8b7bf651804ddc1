"""Settings: one source of truth, documented in the README."""

from __future__ import annotations

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
