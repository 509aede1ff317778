"""Leads from a provider's people search (`leads: {search: ...}`) against the sandbox: the
plan's preview equals what apply imports after de-duplication and the do-not-contact list, a
re-plan shows only new people, the filters are applied by the sandbox's world, a filter a
provider lacks is a lint error, and `seqrun leads search -o csv` writes an importable file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from tests.conftest import ROOT, invoke

EXAMPLE = ROOT / "sequences" / "search-ctos.yaml"


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = invoke(capsys, *argv, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def sequence(provider: str, identities: str, search: str, name: str = "searched") -> str:
    return f"""apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: {name}
spec:
  provider: {provider}
  identities: [{identities}]
  leads:
    search:
{search}
  steps:
    - id: visit
      action: visit_profile
"""


def world(cli_dir: Path) -> Any:
    return Sandbox.open(cli_dir / ".seqrun").world


def test_preview_equals_import_and_a_replan_shows_only_new_people(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = as_json(capsys, "plan", str(EXAMPLE), "--sandbox")
    (sp,) = plan["sequences"]
    truth = [p.url for p in world(cli_dir).profiles.values()
             if p.accessible and "cto" in p.job_title.lower().split()]
    assert sp["searched"] == min(len(truth), 5) == 5
    # one found person is on the do-not-contact list: the preview leaves them out
    dnc = sp["enroll"][0]["profile_url"]
    assert invoke(capsys, "dnc", "add", dnc)[0] == 0
    (sp,) = as_json(capsys, "plan", str(EXAMPLE), "--sandbox")["sequences"]
    previewed = {e["profile_url"] for e in sp["enroll"]}
    assert len(previewed) == 4 and dnc not in previewed
    assert [s["profile_url"] for s in sp["skipped"]] == [dnc]
    assert previewed <= set(truth)

    applied = as_json(capsys, "apply", str(EXAMPLE), "--sandbox", "--virtual-clock",
                      "--auto-approve", "--no-run")
    (done,) = applied["sequences"]
    assert done["enrolled"] == len(previewed)
    leads = as_json(capsys, "leads", "list", "--sequence", "search-ctos")
    assert {row["profile_url"] for row in leads} == previewed

    bigger = write(cli_dir, "bigger.yaml",
                   EXAMPLE.read_text(encoding="utf-8").replace("max: 5", "max: 8"))
    (again,) = as_json(capsys, "plan", str(bigger), "--sandbox")["sequences"]
    assert again["searched"] == 8 and again["already_enrolled"] == 4
    new = {e["profile_url"] for e in again["enroll"]}
    assert len(new) == 3 and not new & previewed and dnc not in new


def test_linkedapi_search_applies_its_filters(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(cli_dir, "la.yaml", sequence(
        "linkedapi", "acct-alice", "      location: Paris\n      max: 50"))
    (sp,) = as_json(capsys, "plan", str(path), "--sandbox")["sequences"]
    paris = {p.url for p in world(cli_dir).profiles.values()
             if p.accessible and "paris" in p.location.lower()}
    assert sp["searched"] == len(paris) > 0
    assert {e["profile_url"] for e in sp["enroll"]} == paris


@pytest.mark.parametrize(("provider", "identity", "search", "where", "says"), [
    ("connectsafely", "acc_12345", "      keywords: cto", "$.spec.leads.search",
     "has no people search"),
    ("edges", "ident-alice", "      location: Paris", "$.spec.leads.search.location",
     "edges's people search has no 'location' filter"),
    ("linkedapi", "acct-alice", "      network: [2nd]", "$.spec.leads.search.network",
     "works on: edges"),
    ("edges", "ident-alice", "      title: CTO\n      identity: ident-bob",
     "$.spec.leads.search.identity", "not one of the sequence's identities"),
])
def test_a_filter_the_provider_lacks_is_a_lint_error(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], provider: str, identity: str,
    search: str, where: str, says: str,
) -> None:
    path = write(cli_dir, "bad.yaml", sequence(provider, identity, search))
    code, _, err = invoke(capsys, "validate", str(path))
    assert code == 1
    assert where in err and says in err and "bad.yaml:" in err


def test_leads_search_csv_is_a_leads_file(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "leads", "search", "--provider", "edges", "--identity",
                            "ident-alice", "--title", "CTO", "--network", "2nd", "--sandbox",
                            "-o", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    w = world(cli_dir)
    assert rows and all("CTO" in r["job_title"].split() for r in rows)
    assert all(r["linkedin_profile_url"] not in w.network["ident-alice"] for r in rows)
    # the file, reviewed, goes into a sequence as its CSV: the same people planned
    write(cli_dir, "reviewed.csv", out)
    path = write(cli_dir, "from-csv.yaml", sequence("edges", "ident-alice", "      title: CTO")
                 .replace("    search:\n      title: CTO", "    csv: reviewed.csv"))
    (sp,) = as_json(capsys, "plan", str(path), "--sandbox")["sequences"]
    assert {e["profile_url"] for e in sp["enroll"]} == {r["linkedin_profile_url"] for r in rows}
    code, _, err = invoke(capsys, "leads", "search", "--provider", "edges", "--identity",
                          "ident-alice", "--sandbox")
    assert code == 2 and "at least one of" in err


def test_search_rows_are_preflighted_naming_the_search_and_the_person(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the note reads a column no search row has (and no default): each person found is
    # named, by the sequence's search, their rank, name and profile; apply refuses
    found = as_json(capsys, "leads", "search", "--provider", "edges", "--identity",
                    "ident-alice", "--title", "CTO", "--network", "2nd", "--max", "5",
                    "--sandbox")["leads"]
    assert len(found) == 5
    path = write(cli_dir, "nick.yaml", EXAMPLE.read_text(encoding="utf-8").replace(
        "{{ lead.first_name | default('there') }}", "{{ lead.nickname }}"))
    code, out, err = invoke(capsys, "plan", str(path), "--sandbox")
    assert code == 1 and "preflight: 5 lead row(s) would fail" in err
    shown = " ".join(out.split())
    for rank, person in enumerate(found, 1):
        assert (f"search-ctos.leads.search(edges, ident-alice):{rank}:1: "
                f"{person['first_name']} {person['last_name']} "
                f"({person['linkedin_profile_url']}), step 'connect' with.note: "
                "lead.nickname is empty and the text has no default") in shown
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 1 and "search-ctos.leads.search(edges, ident-alice):1:1: " in err

    # beside a CSV: its rows are named by file line, the search's by the search; a person in
    # both is taken from the CSV (with the column), the search's row a duplicate of that line
    first = found[0]
    write(cli_dir, "known.csv", "linkedin_profile_url,nickname\n"
          f"{first['linkedin_profile_url']},Eddie\n")
    both = write(cli_dir, "both.yaml", path.read_text(encoding="utf-8").replace(
        "  leads:\n", "  leads:\n    csv: known.csv\n"))
    (sp,) = as_json(capsys, "plan", str(both), "--sandbox", "--skip-bad-rows")["sequences"]
    assert [e["profile_url"] for e in sp["enroll"]] == [first["linkedin_profile_url"]]
    code, out, _ = invoke(capsys, "plan", str(both), "--sandbox")
    shown = " ".join(out.split())
    assert code == 1 and "known.csv:" not in shown.split("would fail")[1]
    assert f"search-ctos.leads.search(edges, ident-alice):2:1: {found[1]['first_name']}" in shown
    assert ("search-ctos.leads.search(edges, ident-alice):1:1: linkedin_profile_url: "
            "warning: duplicate of known.csv:2") in shown
