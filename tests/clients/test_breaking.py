"""`buf breaking` catches a breaking change; scripts/buf-breaking finds the baseline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"
SCRIPT = REPO_ROOT / "scripts" / "buf-breaking"
TOKEN_SERVICE = "protos/m2mauth/v1/token_service.proto"
AUDIENCE_FIELD = "  string audience = 5;\n"


@pytest.fixture(autouse=True)
def _buf() -> None:
    if not BUF.exists():
        pytest.fail("node_modules/.bin/buf is missing: run `npm ci` (`make test` does it)")


def copy_contract(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "buf.yaml", destination / "buf.yaml")
    shutil.copytree(REPO_ROOT / "protos", destination / "protos")
    return destination


def remove_audience(root: Path) -> None:
    path = root / TOKEN_SERVICE
    text = path.read_text()
    assert AUDIENCE_FIELD in text
    path.write_text(text.replace(AUDIENCE_FIELD, ""))


def buf_breaking(workdir: Path, against: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(against)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_unchanged_contract_passes(tmp_path: Path) -> None:
    changed = copy_contract(tmp_path / "changed")
    result = buf_breaking(changed, REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_removing_a_field_is_breaking(tmp_path: Path) -> None:
    changed = copy_contract(tmp_path / "changed")
    remove_audience(changed)
    result = buf_breaking(changed, REPO_ROOT)
    assert result.returncode != 0
    assert 'Previously present field "5" with name "audience"' in result.stdout, result.stdout


# --- the script, in a throwaway repository -----------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def new_repo(path: Path) -> Path:
    repo = copy_contract(path)
    (repo / "scripts").mkdir()
    shutil.copy(SCRIPT, repo / "scripts" / "buf-breaking")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "contract")
    return repo


def run_script(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/buf-breaking"],
        cwd=repo,
        env={"PATH": "/usr/bin:/bin", "BUF": str(BUF), "HOME": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_script_passes_with_nothing_to_compare_against(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    result = run_script(repo)
    assert result.returncode == 0, result.stderr
    assert "SKIPPED: no earlier commit" in result.stdout


def test_the_script_fails_on_a_breaking_commit(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    remove_audience(repo)
    git(repo, "commit", "-q", "-am", "drop audience")
    result = run_script(repo)
    assert result.returncode != 0
    assert "against HEAD~1" in result.stdout
    assert "audience" in result.stdout


def test_the_script_compares_a_branch_with_where_it_left_main(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "feature")
    remove_audience(repo)
    git(repo, "commit", "-q", "-am", "drop audience")
    (repo / "README").write_text("a later, harmless commit\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "docs")
    # HEAD~1 has the removal already; the merge-base with main does not.
    result = run_script(repo)
    assert result.returncode != 0, result.stdout
    assert "audience" in result.stdout


def test_the_script_prefers_the_last_release_tag(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    git(repo, "tag", "v1.0.0")
    remove_audience(repo)
    git(repo, "commit", "-q", "-am", "drop audience")
    (repo / "README").write_text("a later, harmless commit\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "docs")
    result = run_script(repo)
    assert result.returncode != 0
    assert "against v1.0.0" in result.stdout


def test_against_a_contract_without_language_options_only_their_rules_are_waived(
    tmp_path: Path,
) -> None:
    repo = copy_contract(tmp_path / "repo")
    (repo / "scripts").mkdir()
    shutil.copy(SCRIPT, repo / "scripts" / "buf-breaking")
    with_options = {p: p.read_text() for p in (repo / "protos").rglob("*.proto")}
    for path, text in with_options.items():
        path.write_text("".join(line for line in text.splitlines(True) if "option " not in line))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "before the options")
    for path, text in with_options.items():
        path.write_text(text)
    git(repo, "commit", "-q", "-am", "the options")
    result = run_script(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "predates the language options" in result.stdout

    remove_audience(repo)
    git(repo, "commit", "-q", "-am", "drop audience")
    git(repo, "reset", "-q", "--soft", "HEAD~1")  # options and removal against the old contract
    git(repo, "commit", "-q", "-m", "options and a removal")
    result = run_script(repo)
    assert result.returncode != 0
    assert "audience" in result.stdout
