"""Preflight (engine.apply.preflight): each failing kind of lead row named by its line, nothing
enrolled without --skip-bad-rows and the others with it; identities checked at the sandbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.apply.plan import make_plan
from engine.apply.sequences import apply
from engine.cli import main
from engine.clock import VirtualClock
from engine.errors import PlanError
from engine.manifest import templates
from engine.manifest.loader import load
from engine.model import Sequence
from engine.providers import REGISTRY
from engine.providers.base import Provider
from engine.sandbox import Sandbox
from engine.store import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# 300 characters once a 3-letter first name and a 9-letter company are filled in
NOTE = "Hi {{ lead.first_name }}, " + "x" * 282 + " {{ lead.company_name }}"
MANIFEST = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: pf}
spec:
  provider: edges
  identities: [IDENTITIES]
  leads: {csv: leads.csv}
  steps:
    - id: connect
      action: connect
      with:
        note: "NOTE"
      "on": {ALREADY_CONNECTED: pitch}
    - id: accepted
      wait_for: connection_accepted
      timeout: 14d
      on_timeout: completed
    - id: pitch
      action: send_message
      with:
        text: "{Hi|Hello} {{ lead.first_name }}, about {{ lead.pain_point }}"
      next: completed
"""
# line 2 passes; 3: empty pain_point (the column exists); 4: a URL the provider refuses;
# 5: the note over 300 characters once names are filled in; 6: a duplicate (not a failure)
LEADS = """\
linkedin_profile_url,first_name,company_name,pain_point
https://www.linkedin.com/in/ada,Ada,Analytica,slow builds
https://www.linkedin.com/in/grace,Bob,Compilers,
https://example.com/in/alan,Ann,Bletchley,codes
https://www.linkedin.com/in/kat,Katherine,Orbital Math,orbits
https://www.linkedin.com/in/ADA,Ada,Analytica,slow builds
"""


def write(tmp_path: Path, identities: str = "ident-alice, ident-bob") -> Path:
    (tmp_path / "leads.csv").write_text(LEADS)
    path = tmp_path / "seq.yaml"
    path.write_text(MANIFEST.replace("IDENTITIES", identities).replace("NOTE", NOTE))
    return path


def sequence(tmp_path: Path, identities: str = "ident-alice, ident-bob") -> Sequence:
    (seq,) = load([write(tmp_path, identities)])
    assert isinstance(seq, Sequence)
    return seq


def lines_of(problems: object) -> dict[int, str]:
    return {p.line: p.message for p in problems}  # type: ignore[attr-defined]


async def test_each_failure_kind_is_named_by_its_line(store: Store, tmp_path: Path) -> None:
    plan = await make_plan([sequence(tmp_path)], store=store, now=T0)
    bad = lines_of(plan.bad_rows)
    assert sorted(bad) == [3, 4, 5]
    assert bad[3] == "lead.pain_point is empty and the text has no default (`| default('...')`)"
    assert bad[4].startswith("not a linkedin.com URL")
    assert bad[5] == "connection note renders to 309 characters, over the 300 that edges accepts"
    assert {p.file for p in plan.bad_rows} == {str(tmp_path / "leads.csv")}
    assert [e.profile_url for e in plan.sequences[0].enroll] == ["https://www.linkedin.com/in/ada"]
    assert plan.failed


async def test_nothing_is_enrolled_without_skip_bad_rows(store: Store, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"leads.csv:3:1: step 'pitch' with.text: lead.pain_point"):
        await apply([sequence(tmp_path)], store=store, clock=VirtualClock(T0),
                    approve=lambda p: True)
    assert store.enrollments() == [] and store.get_sequence("pf") is None


async def test_skip_bad_rows_enrolls_the_others(store: Store, tmp_path: Path) -> None:
    result = await apply([sequence(tmp_path)], store=store, clock=VirtualClock(T0),
                         approve=lambda p: True, skip_bad_rows=True)
    assert result.plan.skip_bad_rows and not result.plan.failed
    assert sorted(lines_of(result.plan.bad_rows)) == [3, 4, 5]
    assert [s.enrolled for s in result.sequences] == [1]
    (lead,) = [store.get_lead(e.lead_id) for e in store.enrollments()]
    assert lead is not None and lead.profile_url == "https://www.linkedin.com/in/ada"


async def test_the_longest_spintax_variant_is_measured(store: Store, tmp_path: Path) -> None:
    seq = sequence(tmp_path)
    (tmp_path / "leads.csv").write_text(
        "linkedin_profile_url,first_name,company_name,pain_point\n"
        "https://www.linkedin.com/in/ada,Ada,Analytica,builds\n")
    note = "{Hi|" + "y" * 297 + "} {{ lead.first_name }}"  # the long variant: 301 for Ada
    steps = tuple(replace(s, with_={"note": note}) if s.id == "connect" else s
                  for s in seq.steps)
    plan = await make_plan([replace(seq, steps=steps)], store=store, now=T0)
    assert lines_of(plan.bad_rows) == {
        2: "connection note renders to 301 characters (its longest spintax variant), over "
           "the 300 that edges accepts"}


def test_spintax_variants_cover_every_option_and_the_longest() -> None:
    text = "{a|b|c}" * 5 + "{long text here|x}{ {{ lead.z }}|q}"
    variants = templates.spintax_variants(text, limit=8)
    assert "aaaaalong text here {{ lead.z }}" in variants  # the longest
    assert any("q" in v for v in variants) and any("ccccc" in v for v in variants)


def test_lead_columns_are_known_unless_lead_is_read_whole() -> None:
    assert templates.lead_columns("{{ lead.a }} {{ lead['b'] | default('x') }}") == {"a", "b"}
    assert templates.lead_columns("{{ lead.get('a') }}") is None
    assert templates.lead_columns("{% for k in lead %}{{ k }}{% endfor %}") is None


# ---- the CLI --------------------------------------------------------------------------------


def test_plan_exits_1_naming_the_rows(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(cli_dir)
    assert main(["plan", "seq.yaml", "--sandbox"]) == 1
    captured = capsys.readouterr()
    assert "leads.csv:3:1: step 'pitch' with.text: lead.pain_point is empty" in captured.out
    assert "leads.csv:4:1: linkedin_profile_url: not a linkedin.com URL" in captured.out
    assert "3 lead row(s) would fail" in captured.err
    assert main(["plan", "seq.yaml", "--sandbox", "--skip-bad-rows", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [b["line"] for b in plan["sequences"][0]["bad_rows"]] == [3, 4, 5]
    assert len(plan["sequences"][0]["enroll"]) == 1


def test_apply_skip_bad_rows_from_the_cli(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(cli_dir)
    assert main(["apply", "seq.yaml", "--sandbox", "--auto-approve", "--no-run"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert main(["apply", "seq.yaml", "--sandbox", "--auto-approve", "--no-run",
                 "--skip-bad-rows", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["sequences"][0]["enrolled"] == 1


def test_validate_leads(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(cli_dir)
    assert main(["validate", "seq.yaml", "--leads", "leads.csv"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in err if line.startswith("leads.csv:")] == [
        "3", "4", "5", "6"]
    assert "leads.csv:6:1: linkedin_profile_url: warning: duplicate of line 2" in err[3]
    (cli_dir / "good.csv").write_text(LEADS.splitlines()[0] + "\n" + LEADS.splitlines()[1])
    assert main(["validate", "seq.yaml", "--leads", "good.csv"]) == 0


# ---- identities -----------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    opened = Sandbox.open(tmp_path / "world")
    yield opened
    opened.close()


def on(sandbox: Sandbox) -> dict[str, Provider]:
    return {name: REGISTRY[name].factory(sandbox.client(name))  # type: ignore[misc]
            for name in ("edges", "connectsafely")}


async def test_an_unknown_identity_is_a_plan_error_at_its_line(
    store: Store, tmp_path: Path, sandbox: Sandbox
) -> None:
    seq = sequence(tmp_path, "ident-alice, ident-alcie")
    with pytest.raises(PlanError) as caught:
        await make_plan([seq], store=store, now=T0, provider_for=on(sandbox).__getitem__)
    assert str(caught.value) == (
        f"{tmp_path / 'seq.yaml'}:6:29: $.spec.identities[1]: identity 'ident-alcie' is "
        "unknown to edges")


async def test_an_expired_identity_is_a_plan_error(
    store: Store, tmp_path: Path, sandbox: Sandbox
) -> None:
    sandbox.world.set_auth("ident-bob", False)
    with pytest.raises(PlanError, match=r"\$.spec.identities\[1\]: identity 'ident-bob' cannot "
                                        r"act on edges: .*AUTH_EXPIRED"):
        await make_plan([sequence(tmp_path)], store=store, now=T0,
                        provider_for=on(sandbox).__getitem__)


async def test_a_paused_identity_is_a_plan_error(
    store: Store, tmp_path: Path, sandbox: Sandbox
) -> None:
    store.put_identity("ident-alice", "edges")
    store.set_identity_status("ident-alice", "paused", "paused by the user")
    with pytest.raises(PlanError, match=r"identities\[0\]: identity 'ident-alice' is paused"):
        await make_plan([sequence(tmp_path)], store=store, now=T0,
                        provider_for=on(sandbox).__getitem__)


async def test_known_active_identities_pass(
    store: Store, tmp_path: Path, sandbox: Sandbox
) -> None:
    plan = await make_plan([sequence(tmp_path)], store=store, now=T0, skip_bad_rows=True,
                           provider_for=on(sandbox).__getitem__)
    assert plan.warnings == ()


async def test_connectsafely_unknown_account(sandbox: Sandbox) -> None:
    provider = on(sandbox)["connectsafely"]
    assert await provider.identity_status("acc_12345") == "active"
    assert await provider.identity_status("acc_nope") == "unknown"


def test_without_credentials_identities_are_not_checked(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGES_API_KEY", raising=False)
    write(cli_dir, "ident-alice, ident-alcie")
    assert main(["plan", "seq.yaml", "--skip-bad-rows"]) == 0
    assert "warning: edges identities not checked: edges: the environment variable " \
           "EDGES_API_KEY is not set" in capsys.readouterr().err
    assert main(["plan", "seq.yaml", "--skip-bad-rows", "--sandbox"]) == 1
    assert "identity 'ident-alcie' is unknown to edges" in capsys.readouterr().err


# ---- streaming: the same rules whatever the chunk size ------------------------------------------


def big_csv(path: Path) -> Path:
    rows = ["linkedin_profile_url,first_name,company_name,pain_point"]
    for i in range(23):
        rows.append(f"https://www.linkedin.com/in/Lead-{i}/?trk=x,N{i},C{i},p")
        if i % 5 == 4:  # a duplicate in another form, further down (often in another chunk)
            rows.append(f"linkedin.com/in/lead-{i - 3}#top,N,C,p")
    rows.append("https://example.com/x,N,C,p")
    path.write_text("\n".join(rows) + "\n")
    return path


def import_with_chunks(tmp_path: Path, name: str, size: int,
                       monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[tuple[str, str]]]:
    from engine.apply.leads import import_leads
    from engine.manifest import leads as lead_files

    monkeypatch.setattr(lead_files, "CHUNK_ROWS", size)
    store = Store.open(None, tmp_path / name)
    try:
        seq = sequence(tmp_path)
        asyncio.run(apply([replace(seq, leads=replace(seq.leads, csv=None))], store=store,
                          clock=VirtualClock(T0), approve=lambda p: True))
        store.add_do_not_contact("https://www.linkedin.com/in/lead-7", "asked")
        result = import_leads(big_csv(tmp_path / "big.csv"), "pf", store=store, now=T0)
        spread = sorted((store.get_lead(e.lead_id).profile_url, e.identity)  # type: ignore[union-attr]
                        for e in store.enrollments())
        return result, spread
    finally:
        store.close()


def test_import_in_chunks_keeps_dedupe_dnc_and_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, spread = import_with_chunks(tmp_path, "one", 10_000, monkeypatch)
    chunked, spread_chunked = import_with_chunks(tmp_path, "many", 3, monkeypatch)
    assert chunked.to_json() == whole.to_json()
    assert spread_chunked == spread
    assert (whole.taken, whole.enrolled, len(whole.skipped)) == (23, 22, 1)
    assert [p.line for p in whole.refused] == [7, 13, 19, 25, 29]  # 4 duplicates, 1 bad URL
    assert {i for _, i in spread} == {"ident-alice", "ident-bob"}
    assert sum(i == "ident-alice" for _, i in spread) == 11


async def test_plan_in_chunks_equals_one_pass(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.manifest import leads as lead_files

    seq = sequence(tmp_path)
    big_csv(tmp_path / "leads.csv")
    whole = (await make_plan([seq], store=store, now=T0)).to_json()
    monkeypatch.setattr(lead_files, "CHUNK_ROWS", 4)
    assert (await make_plan([seq], store=store, now=T0)).to_json() == whole
    assert len(whole["sequences"][0]["enroll"]) == 23


async def test_a_provider_that_does_not_answer_is_a_warning(
    store: Store, tmp_path: Path
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.AsyncClient(base_url="http://edges.test/v1/",
                               transport=httpx.MockTransport(refuse))
    edges = REGISTRY["edges"].factory(client)  # type: ignore[misc]
    plan = await make_plan([sequence(tmp_path)], store=store, now=T0, skip_bad_rows=True,
                           provider_for=lambda name: edges)
    assert [w.split(":")[0] for w in plan.warnings] == [
        "edges identity 'ident-alice' not checked", "edges identity 'ident-bob' not checked"]
    await client.aclose()
