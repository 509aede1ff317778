"""The Policy kind's pieces the loader, plan and the runner share: the do-not-contact files,
a lead's company domains, and the resolved Policy as stored at apply (the runner reads it
back from the store: the files it named may not be where the runner runs).

A do-not-contact file holds one entry a line: a LinkedIn profile URL (normalized by
:mod:`engine.urls`) or a company domain (``example.com``); ``#`` starts a comment.

>>> lead_domains({"email": "ada@Sub.Example.com", "company_website": "https://www.acme.io/x"})
{'sub.example.com', 'acme.io'}
>>> domain_blocked({"sub.example.com"}, frozenset({"example.com"}))
'example.com'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.errors import Problem
from engine.model import NOTICE_KINDS, Metadata, Notify, Policy, SourceMap
from engine.urls import normalize_profile_url

#: lead columns that name the lead's company domain (a URL or an e-mail address will do)
DOMAIN_COLUMNS: tuple[str, ...] = ("company_domain", "company_website", "website", "email")
_DOMAIN = re.compile(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_DNC_FILE = 50 * 1024 * 1024  # bytes: a do-not-contact file is a list, not a dump


def read_dnc_file(path: Path, shown: str, problems: list[Problem]) -> tuple[set[str], set[str]]:
    """The (profile URLs, domains) of one do-not-contact file; a bad line is a problem at
    ``shown:line:1``."""
    urls: set[str] = set()
    domains: set[str] = set()
    try:
        if path.stat().st_size > MAX_DNC_FILE:
            problems.append(Problem(shown, 1, 1, "$", f"over {MAX_DNC_FILE} bytes"))
            return urls, domains
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(Problem(shown, 1, 1, "$", f"cannot read the do-not-contact file: {reason}"))
        return urls, domains
    for n, raw in enumerate(text.splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        if "linkedin.com/" in entry.lower():
            try:
                urls.add(normalize_profile_url(entry))
            except ValueError as exc:
                problems.append(Problem(shown, n, 1, "$", f"not a profile URL: {exc}"))
        elif _DOMAIN.match(entry.lower()):
            domains.add(entry.lower())
        else:
            message = f"{entry[:80]!r} is neither a LinkedIn profile URL nor a company domain"
            problems.append(Problem(shown, n, 1, "$", message))
    return urls, domains


def _host(value: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    if "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
    elif "://" in text or "/" in text:
        text = urlsplit(text if "://" in text else f"//{text}").hostname or ""
    text = text.removeprefix("www.").rstrip(".")
    return text if _DOMAIN.match(text) else None


def lead_domains(data: Mapping[str, Any]) -> set[str]:
    """The company domains a lead's data names (:data:`DOMAIN_COLUMNS`)."""
    found = set()
    for column in DOMAIN_COLUMNS:
        value = data.get(column)
        if isinstance(value, str):
            host = _host(value)
            if host:
                found.add(host)
    return found


def domain_blocked(domains: Iterable[str], blocked: frozenset[str]) -> str | None:
    """The blocked domain one of ``domains`` is (or is a subdomain of), or None."""
    if not blocked:
        return None
    for d in domains:
        parts = d.split(".")
        for i in range(len(parts) - 1):
            candidate = ".".join(parts[i:])
            if candidate in blocked:
                return candidate
    return None


def blocked_reason(policy: Policy | None, url: str, data: Mapping[str, Any]) -> str | None:
    """Why the Policy's do-not-contact list holds this lead, or None."""
    if policy is None:
        return None
    if url in policy.dnc_urls:
        return f"on the do-not-contact list of policy {policy.name!r}"
    hit = domain_blocked(lead_domains(data), policy.dnc_domains)
    if hit:
        return f"company domain {hit} is on the do-not-contact list of policy {policy.name!r}"
    return None


# ---- the resolved Policy in the store ----------------------------------------------------------


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """The resolved Policy (files read, durations in seconds) as the store keeps it."""
    return {
        "name": policy.name,
        "dnc_urls": sorted(policy.dnc_urls),
        "dnc_domains": sorted(policy.dnc_domains),
        "one_voice_s": None if policy.one_voice is None else policy.one_voice.total_seconds(),
        "max_touches": policy.max_touches,
        "touch_window_s": None
        if policy.touch_window is None
        else policy.touch_window.total_seconds(),
        "budgets": dict(policy.budgets),
        "quiet_days": sorted(d.isoformat() for d in policy.quiet_days),
        "timezone": policy.timezone,
        "tiers": dict(policy.tiers),
        **({} if policy.notify is None else {"notify": notify_to_json(policy.notify)}),
    }


def notify_to_json(target: Notify) -> dict[str, Any]:
    """A ``notify:`` target as the store keeps it (the secret's variable name, never a value)."""
    return {"url": target.url, "secret_env": target.secret_env, "header": target.header,
            "command": list(target.command), "events": sorted(target.events)}


def notify_from_json(data: Any) -> Notify | None:
    """The target :func:`notify_to_json` stored (None: none)."""
    if not isinstance(data, Mapping):
        return None
    return Notify(url=data.get("url"), secret_env=data.get("secret_env"),
                  header=str(data.get("header") or Notify.header),
                  command=tuple(data.get("command") or ()),
                  events=frozenset(data.get("events") or NOTICE_KINDS))


def policy_from_json(data: Mapping[str, Any]) -> Policy:
    """The Policy :func:`policy_to_json` stored."""

    def seconds(key: str) -> timedelta | None:
        value = data.get(key)
        return None if value is None else timedelta(seconds=float(value))

    return Policy(
        metadata=Metadata(str(data["name"])),
        dnc_urls=frozenset(data.get("dnc_urls", ())),
        dnc_domains=frozenset(data.get("dnc_domains", ())),
        one_voice=seconds("one_voice_s"),
        max_touches=data.get("max_touches"),
        touch_window=seconds("touch_window_s"),
        budgets={str(k): int(v) for k, v in data.get("budgets", {}).items()},
        quiet_days=frozenset(date.fromisoformat(d) for d in data.get("quiet_days", ())),
        timezone=str(data.get("timezone", "UTC")),
        tiers={str(k): str(v) for k, v in data.get("tiers", {}).items()},
        source=SourceMap(f"<policy {data['name']}>"),
        notify=notify_from_json(data.get("notify")),
    )
