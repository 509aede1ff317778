"""Profiles: added, generated, read from a leads CSV, looked up, and the relationship each one
already has with each identity."""

from __future__ import annotations

import base64
import csv
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from engine.manifest.leads import sniff_delimiter
from engine.sandbox.world.events import Timeline
from engine.sandbox.world.model import IdentityState, Profile, WorldError
from engine.sandbox.world.names import CITIES, COMPANIES, FIRST_NAMES, LAST_NAMES, OPENERS, TITLES
from engine.sandbox.world.state import digest
from engine.sandbox.world.urls import normalize_url


class Profiles(Timeline):
    """Profiles and their pre-existing relationships with identities."""

    def _profile_id_for(self, key: str) -> int:
        pid = 100_000_000 + int.from_bytes(digest(self.seed, "pid", key)[:4], "big") % 900_000_000
        while pid in self._by_profile_id:
            pid += 1
        return pid

    def add_profile(
        self,
        url: str,
        *,
        first_name: str | None = None,
        full_name: str | None = None,
        company: str | None = None,
        job_title: str | None = None,
        location: str | None = None,
        accessible: bool = True,
        already_connected_with: Iterable[str] | None = (),
        writes_first_to: Iterable[str] | None = (),
        accepts: bool | None = None,
        replies: bool | None = None,
        generated: bool = False,
    ) -> Profile:
        """Add (or update) a profile. ``already_connected_with``/``writes_first_to`` list identity
        uids; ``None`` draws them from the configured fractions. ``accepts``/``replies`` ``None``
        draw from the probabilities (per identity, per message)."""
        self._advance()
        norm = normalize_url(url)
        handle = norm.rsplit("/", 1)[-1]
        bits = digest(self.seed, "profile", norm)

        def pick(i: int, options: tuple[str, ...]) -> str:
            return options[int.from_bytes(bits[2 * i:2 * i + 2], "big") % len(options)]

        words = [w for w in re.split(r"[-_.]+", handle) if w.isalpha()]
        guess_first = words[0].capitalize() if words else pick(0, FIRST_NAMES)
        guess_last = words[1].capitalize() if len(words) > 1 else pick(1, LAST_NAMES)
        first = first_name or (full_name.split()[0] if full_name else guess_first)
        full = full_name or f"{first if first_name else guess_first} {guess_last}"
        last = full.split(" ", 1)[1] if " " in full else ""
        comp = company if company is not None else pick(2, COMPANIES)
        title = job_title if job_title is not None else pick(3, TITLES)
        existing = self.profiles.get(norm)
        pid = existing.profile_id if existing else self._profile_id_for(norm)
        sn = "ACwAA" + base64.b32encode(digest(self.seed, "sn", norm)[:15]).decode()[:23]
        profile = Profile(
            url=norm, handle=handle, profile_id=pid, sales_navigator_profile_id=sn,
            first_name=first, last_name=last, full_name=full, company=comp, job_title=title,
            headline=f"{title} at {comp}" if comp else title,
            location=location if location is not None else pick(4, CITIES),
            accessible=accessible, accepts=accepts, replies=replies,
            already_connected_with=None if already_connected_with is None
            else tuple(already_connected_with),
            writes_first_to=None if writes_first_to is None else tuple(writes_first_to),
            generated=generated,
        )
        self.profiles[norm] = profile
        self._by_profile_id[pid] = norm
        self._by_sn[sn.lower()] = profile
        if existing is None:
            for ident in self.identities.values():
                self._seed_pair(ident, profile)
        return profile

    def _generated_profile(self, url: str) -> Profile:
        norm = normalize_url(url)
        return self.add_profile(
            norm, accessible=self._uniform("traits", norm) >= self.config.inaccessible_fraction,
            already_connected_with=None, writes_first_to=None, generated=True,
        )

    def populate(self, n: int, *, prefix: str = "lead") -> list[Profile]:
        """Add ``n`` generated profiles with drawn traits (names, fractions of edge cases)."""
        out = []
        for i in range(n):
            rng = self._rng("populate", prefix, i)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            url = f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{prefix}{i:05d}"
            if url in self.profiles:
                continue
            out.append(self._generated_profile(url))
        return out

    def populate_from_csv(self, path: str | Path) -> list[Profile]:
        """Profiles for each row of a leads CSV (``linkedin_profile_url``, ``full_name``,
        ``first_name``, ``company_name``); traits drawn as for generated profiles."""
        out = []
        with open(path, newline="", encoding="utf-8") as fh:
            delimiter = sniff_delimiter(fh.readline())  # a semicolon-separated export too
            fh.seek(0)
            for row in csv.DictReader(fh, delimiter=delimiter):
                url = (row.get("linkedin_profile_url") or row.get("profile_url") or "").strip()
                try:
                    norm = normalize_url(url)
                except WorldError:
                    continue
                accessible = self._uniform("traits", norm) >= self.config.inaccessible_fraction
                out.append(self.add_profile(
                    norm, first_name=row.get("first_name") or None,
                    full_name=row.get("full_name") or None,
                    company=row.get("company_name") or row.get("company") or None,
                    accessible=accessible,
                    already_connected_with=None, writes_first_to=None, generated=True,
                ))
        return out

    def profile(self, url: str) -> Profile:
        """The profile at ``url`` (auto-created when the config allows), accessible or not."""
        self._advance()
        return self._profile(url, check_access=False)

    def profile_by_id(self, profile_id: int | str) -> Profile | None:
        """Lookup by numeric LinkedIn id, Sales Navigator id or handle."""
        try:
            url = self._by_profile_id.get(int(profile_id))
        except (TypeError, ValueError):
            url = None
            text = str(profile_id).strip().lower()
            if text in self._by_sn:
                return self._by_sn[text]
            return self.profiles.get(f"https://www.linkedin.com/in/{text}")
        return self.profiles.get(url) if url else None

    def _profile(self, url: str, *, check_access: bool = True) -> Profile:
        norm = normalize_url(url)
        profile = self.profiles.get(norm)
        if profile is None and "/sales/" in url.lower():
            profile = self._by_sn.get(norm.rsplit("/", 1)[-1])
        if profile is None:
            if not self.config.auto_create_profiles:
                raise WorldError("PROFILE_NOT_ACCESSIBLE", f"profile not found: {norm}")
            profile = self._generated_profile(norm)
        if check_access and not profile.accessible:
            raise WorldError("PROFILE_NOT_ACCESSIBLE",
                             f"profile deleted, blocked or moved: {norm}")
        return profile

    def _already_connected(self, ident: IdentityState, profile: Profile) -> bool:
        if profile.already_connected_with is not None:
            return ident.uid in profile.already_connected_with
        return self._uniform("connected", ident.uid, profile.url) < (
            self.config.already_connected_fraction)

    def _writes_first(self, ident: IdentityState, profile: Profile) -> bool:
        if profile.writes_first_to is not None:
            return ident.uid in profile.writes_first_to
        return self._uniform("writes_first", ident.uid, profile.url) < (
            self.config.writes_first_fraction)

    def _seed_pair(self, ident: IdentityState, profile: Profile) -> None:
        """Materialize the pre-existing relationship of one (identity, profile) pair."""
        if not profile.accessible:
            return
        if self._already_connected(ident, profile):
            days = 1 + 699 * self._uniform("connected_at", ident.uid, profile.url)
            self._connect(ident.uid, profile.url, self.started_at - timedelta(days=days))
        if self._writes_first(ident, profile):
            rng = self._rng("writes_first_at", ident.uid, profile.url)
            lo, hi = self.config.writes_first_delay_hours
            at = self.started_at + timedelta(hours=rng.uniform(lo, hi))
            self._schedule(at, "writes_first", ident.uid, profile.url,
                           text=rng.choice(OPENERS))
