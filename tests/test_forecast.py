"""The forecast of `seqrun simulate` (and `plan --forecast`): read back from the run's store."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from engine.store import Store
from engine.store.db import throwaway_store
from tests.conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "sequences" / "demo-campaign.yaml"


def _simulate(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code, out, _ = invoke(capsys, "simulate", str(DEMO), "--until", "+30d", "-o", "json", *extra)
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    return data


def test_per_day_totals_are_what_the_run_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "kept"
    data = _simulate(capsys, "--keep", str(kept))
    fc = data["forecast"]
    with throwaway_store():  # the kept state dir's own store, whatever the environment says
        store = Store.open(None, kept)
        try:
            done = [a for a in store.actions() if a.status == "done"]
        finally:
            store.close()
    by_day: Counter[tuple[str, str, str]] = Counter(
        ((a.finished_at or a.created_at).replace(tzinfo=UTC).date().isoformat(), a.identity,
         a.action) for a in done)
    seen: Counter[tuple[str, str, str]] = Counter()
    for day in fc["days"]:
        assert day["total"] == sum(n for per in day["actions"].values() for n in per.values())
        for ident, per in day["actions"].items():
            for action, n in per.items():
                seen[(day["day"], ident, action)] = n
    assert seen == by_day
    # ... and what the command reported: the apply's first tick plus the run over 30 days
    acted = data["apply"]["run"]["actions"] + data["run"]["actions"]
    assert sum(d["total"] for d in fc["days"]) == len(done) == acted
    # every lead of demo-campaign ends within the 30 days; each day's funnel counts them all
    assert fc["active_at_end"] == 0 and fc["finish"] is not None
    assert all(sum(d["funnel"].values()) == fc["leads"] == 120 for d in fc["days"])
    # 60 leads per identity against 20 connections a day: the connect limit binds on day one
    assert fc["binds"]["ident-alice"]["connect"] == fc["start"]
    first = fc["days"][0]
    assert first["actions"]["ident-alice"]["connect"] == fc["limits"]["ident-alice"]["connect"]
    assert first["backlog"]["limit"] > 0


def test_the_text_output_shows_the_forecast(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "simulate", str(DEMO), "--until", "+30d")
    assert code == 0
    assert "forecast: actions per day and identity" in out
    assert "limit binds: ident-alice connect 20/24h from 2026-01-05" in out
    assert re.search(r"2026-01-05\s+20/20", out)
    assert "finish: every lead reached a terminal by 2026-01-" in out


def test_the_html_chart_is_written_with_the_json_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "load.html"
    data = _simulate(capsys, "--chart", str(chart))
    page = chart.read_text(encoding="utf-8")
    assert chart.stat().st_size > 1000 and page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    drawn = re.findall(r'data-series="([^"]+)"', page)
    fc = data["forecast"]
    series = sorted({f"{i}/{a}" for d in fc["days"] for i, per in d["actions"].items()
                     for a in per} | {f"{i}/{a}" for i, per in fc["limits"].items() for a in per})
    assert drawn == [*series, "funnel"]
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)  # each chart is well-formed SVG (XML), or this raises


def test_a_png_chart_needs_matplotlib_or_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "load.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        code, _, err = invoke(capsys, "simulate", str(DEMO), "--chart", str(chart))
        assert code == 2 and "pip install 'seqrun[chart]'" in err and not chart.exists()
        return
    _simulate(capsys, "--chart", str(chart))
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_an_unknown_chart_format_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "simulate", str(DEMO), "--chart", str(tmp_path / "x.svg"))
    assert code == 2 and "expected a .html or .png file" in err and out == ""


def test_plan_forecast_shows_the_first_week_of_the_same_simulation(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _simulate(capsys)["forecast"]["days"][:7]
    code, out, _ = invoke(capsys, "plan", str(DEMO), "--forecast", "-o", "json")
    assert code == 0
    week = json.loads(out)["forecast"]["days"][:7]
    assert [d["actions"] for d in week] == [d["actions"] for d in full]
    code, out, _ = invoke(capsys, "plan", str(DEMO), "--forecast")
    assert code == 0 and "projected actions of the first week" in out
    assert "limit binds: ident-bob connect 20/24h" in out
