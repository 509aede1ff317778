"""Scenario files: the world a sandbox starts from, validated by ``schemas/scenario.json``.

Example ``world.yaml``::

    seed: 42
    profiles: {count: 200, csv: leads.csv}
    behaviour: {accept_probability: 0.8, reply_delay_hours: [1, 12]}
    faults: {rate_429: 0.02}

>>> # world = world_from_scenario("world.yaml", VirtualClock())
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from engine.clock import Clock
from engine.errors import ManifestError, Problem
from engine.manifest.loader import explain_schema_error
from engine.manifest.schemas import schema_dir
from engine.manifest.yamlio import read_documents
from engine.sandbox.common import add_default_identities, parse_iso
from engine.sandbox.world import DEFAULT_LIMITS, FaultConfig, World, WorldConfig
from engine.sandbox.world.config import TextRule

__all__ = ["load_scenario", "scenario_schema", "scenario_start", "world_from_scenario"]


def _schema_path() -> Path:
    return schema_dir() / "scenario.json"


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FormatChecker())


def scenario_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_schema_path().read_text(encoding="utf-8"))
    return data


def _json_path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validate_scenario(data: Any, source: str = "<scenario>") -> dict[str, Any]:
    """The scenario if valid; else ``ManifestError`` with one problem per schema error."""
    # YAML gives datetimes for unquoted timestamps: accept them as ISO strings
    data = json.loads(json.dumps(data, default=lambda o: o.isoformat()
                                 if isinstance(o, datetime) else str(o)))
    if data is None:
        data = {}
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    if errors:
        raise ManifestError(Problem(source, 1, 1, _json_path(e.absolute_path), e.message)
                            for e in errors)
    assert isinstance(data, dict)
    return data


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read and validate a scenario file (YAML or JSON). ``profiles.csv`` is made absolute.

    Read by :mod:`engine.manifest.yamlio` like manifests (JSON-shaped YAML, timestamps stay strings)
    and explained like them: every problem is ``file:line:col: $.path: message`` at the
    offending key or value. An empty file is the default world."""
    p = Path(path)
    if not p.exists():
        raise ManifestError([Problem(str(p), 1, 1, "$", "no such file or directory")])
    documents, problems = read_documents(p)
    if not documents and [q.message for q in problems] == ["empty document"]:
        return validate_scenario({}, str(p))
    if problems:
        raise ManifestError(problems)
    if len(documents) > 1:
        raise ManifestError(
            [documents[1].source.problem("$", "a scenario file holds one YAML document")]
        )
    (doc,) = documents
    errors = _validator().iter_errors(doc.data)
    found = sorted({q for e in errors for q in explain_schema_error(e, doc)})
    if found:
        raise ManifestError(found)
    data = validate_scenario(doc.data, str(p))
    csv_path = data.get("profiles", {}).get("csv")
    if csv_path and not Path(csv_path).is_absolute():
        data["profiles"]["csv"] = str((p.parent / csv_path).resolve())
    return data


def scenario_start(scenario: str | Path | Mapping[str, Any]) -> datetime | None:
    data = _as_data(scenario)
    return parse_iso(data["start"]) if data.get("start") else None


def _as_data(scenario: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(scenario, str | Path):
        return load_scenario(scenario)
    return validate_scenario(dict(scenario))


def world_from_scenario(scenario: str | Path | Mapping[str, Any], clock: Clock) -> World:
    """Build the world a scenario (file path or already-loaded mapping) describes."""
    data = _as_data(scenario)
    behaviour = dict(data.get("behaviour", {}))
    for key in ("accept_delay_hours", "reply_delay_hours", "writes_first_delay_hours"):
        if key in behaviour:
            behaviour[key] = tuple(float(x) for x in behaviour[key])
    behaviour["by_text"] = tuple(TextRule(**r) for r in behaviour.get("by_text", ()))
    limits = {k: dict(v) for k, v in DEFAULT_LIMITS.items()}
    for kind, values in data.get("limits", {}).items():
        limits[kind].update(values)
    fraw = dict(data.get("faults", {}))
    for key in ("auth_expire_at", "reauth_at"):
        fraw[key] = {k: parse_iso(v) for k, v in fraw.get(key, {}).items()}
    fraw["scripted"] = {op: list(labels) for op, labels in fraw.get("scripted", {}).items()}
    idents = data.get("identities")
    for ident in idents or []:
        for key in ("auth_expire_at", "reauth_at"):
            if ident.get(key):
                fraw[key][ident["uid"]] = parse_iso(ident[key])
    config = WorldConfig(**behaviour, limits=limits, faults=FaultConfig(**fraw))
    world = World(clock, seed=int(data.get("seed", 0)), config=config)
    if idents is None:
        add_default_identities(world)
    for ident in idents or []:
        world.add_identity(
            ident["uid"], name=ident.get("name"), kind=ident.get("kind", "classic"),
            type=ident.get("type", "engagement"), aliases=ident.get("aliases", ()),
            provider=ident.get("provider"), limits=ident.get("limits"),
            weekly_limits=ident.get("weekly_limits"), profile_id=ident.get("profile_id"),
        )
    profiles = data.get("profiles", {})
    for item in profiles.get("items", []):
        world.add_profile(item["url"], **{k: v for k, v in item.items() if k != "url"})
    if profiles.get("csv"):
        try:
            world.populate_from_csv(profiles["csv"])
        except OSError as exc:
            raise ManifestError([Problem(str(profiles["csv"]), 1, 1, "$.profiles.csv",
                                         f"cannot read: {exc.strerror}")]) from exc
    if profiles.get("count"):
        world.populate(int(profiles["count"]))
    return world
