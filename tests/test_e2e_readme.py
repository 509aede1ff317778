"""The README's two commands are the contract with a fresh machine and with CI."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands() -> None:
    main_job, tests = _commands()
    assert "pip install" in main_job and "seqrun" in main_job
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, tests = _commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests.strip() in ci


# ---- a fresh clone: every path the README names exists, commands are one per line ----------

# What the README names as part of the repository: a relative path under one of its top-level
# entries (outputs the reader makes, like `> wf.svg` or `-out plan.json`, are not under them).
_TOP = ("sequences", "schemas", "docs", "sandbox", "bench", "tests", "engine", ".ci")
_TOPS = "|".join(re.escape(t) for t in _TOP)
_PATH = re.compile(r"(?<![\w./~-])((?:\.\./)*(?:" + _TOPS + r")/[\w./*-]*[\w*/])")


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_path_the_readme_names_exists_in_a_clone() -> None:
    text = _readme()
    assert "../shared" not in text, "a clone has nothing beside it"
    named = sorted(set(_PATH.findall(text)))
    assert len(named) >= 20 and "docs/manifests.md" in named
    # `../schemas/...` is the editor comment of a manifest in sequences/: relative to it
    resolved = {p: (ROOT / "sequences" / p).resolve() if p.startswith("../") else ROOT / p
                for p in named}
    missing = [p for p, path in resolved.items()
               if not (path.exists() or any(path.parent.glob(path.name)))]
    assert missing == []


def test_the_readme_links_the_manifest_guide() -> None:
    assert "[`docs/manifests.md`](docs/manifests.md)" in _readme()


def test_alternatives_are_separate_commands_not_pipes() -> None:
    """`seqrun pause A | seqrun pause --identity B` pasted runs both: a pipe in a README
    command only ever feeds another program."""
    for block in re.findall(r"```sh\n(.+?)\n```", _readme(), flags=re.S):
        for line in block.splitlines():
            code = line.split("  #")[0]
            assert not re.search(r"\|\s*seqrun\b", code), line


def test_the_readme_documents_shell_completion() -> None:
    text = _readme()
    for shell in ("bash", "zsh", "fish"):
        assert f"seqrun completion {shell}" in text
