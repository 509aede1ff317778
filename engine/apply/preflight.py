"""Preflight: what would fail for each lead row, and on which identity, before anything is sent.

Every templated ``with`` text of every action step is rendered for every lead row that would be
enrolled, in every spintax variant (the runner picks one per enrollment, unknown at plan time),
with the data the runner renders with (:func:`engine.apply.leads.lead_data` plus the profile
URL). A row fails when a text reads an empty or missing value without a ``default``, when a
rendered note or message is longer than the provider accepts, or when the leads reader refused
its URL (the one normalizer, :mod:`engine.urls`) or timezone. A duplicate row is not a failure:
the first row of the lead is taken.

A text's output depends only on the columns it reads (:func:`templates.lead_columns`), so each
text is rendered once per distinct tuple of those values: a sequence of 100,000 leads mostly
repeats its first names and companies.

Identities are checked against the provider (:meth:`Provider.identity_status`): an identity the
provider does not know, or whose session expired, and one paused in the store, is an error at
its line of the manifest.

Example::

    checker = RowChecker(seq)
    problems = checker.check_file(read_leads(seq.leads.csv))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template

from engine.apply.leads import lead_data
from engine.errors import ConfigError, Problem, ProviderError
from engine.manifest import templates
from engine.manifest.leads import URL_COLUMN, LeadImport
from engine.manifest.lint.content import text_limit
from engine.manifest.template_sandbox import MAX_OUTPUT
from engine.model import ActionStep, Sequence
from engine.providers import REGISTRY
from engine.providers.base import Provider

Key = tuple[Any, ...]
#: renderings kept per text: rows often repeat a text's inputs (a company, a title); rows
#: that never do (a first name) would otherwise keep one entry each, a million in all
SEEN_MAX = 20_000
#: values of one column whose output's length a split text keeps (~100 B each): a million
#: leads name some 10,000s of companies; past it, a new value is rendered and not kept (the
#: values met first, the frequent ones, stay: clearing instead made a cycle through more
#: values than the bound miss every time)
LENGTHS_MAX = 100_000


@dataclass
class _Text:
    """One templated ``with`` text of an action step and its renderings seen so far."""

    step: str
    key: str
    variants: tuple[str, ...]
    columns: tuple[str, ...] | None  # None: the text reads `lead` whole
    bound: tuple[str, int] | None  # (what it is, most characters accepted)
    provider: str
    seen: dict[Key, str | None] = field(default_factory=dict)
    split: _Split | None = None

    @property
    def where(self) -> str:
        return f"step {self.step!r} with.{self.key}"

    def failure(self, context: Mapping[str, Any]) -> str | None:
        """Why this text cannot be sent for the lead of ``context``, or None. A text split
        into outputs of one column (:class:`_Split`) passes on their lengths; one that does
        not pass so is rendered whole, for the exact message."""
        if self.passes(context):
            return None
        if self.columns is None:
            key: Key = tuple(sorted((k, str(v)) for k, v in context.items()))
        else:
            key = tuple(context.get(c) for c in self.columns)
        if key in self.seen:
            return self.seen[key]
        if len(self.seen) >= SEEN_MAX:  # bounded: a million distinct rows stay cheap
            self.seen.clear()
        found = self.seen[key] = self._render(context)
        return found

    def passes(self, context: Mapping[str, Any]) -> bool:
        """Whether a split text passes for the lead of ``context`` on its outputs' lengths
        alone (False: not known so)."""
        if self.split is None:
            return False
        longest = self.split.longest(context)
        return longest is not None and (self.bound is None or longest <= self.bound[1])

    def _render(self, context: Mapping[str, Any]) -> str | None:
        longest = 0
        for variant in self.variants:
            try:
                longest = max(longest, len(templates.render_variant(variant, context)))
            except templates.TemplateRenderError as exc:
                return _render_failure(variant, context, exc)
        if self.bound is not None and longest > self.bound[1]:
            what, limit = self.bound
            which = " (its longest spintax variant)" if len(self.variants) > 1 else ""
            return (f"{what} renders to {longest} characters{which}, over the {limit} that "
                    f"{self.provider} accepts")
        return None


class _Split:
    """A text whose every spintax variant is literal text and outputs of one lead column each
    (:func:`templates.pieces`): its length for a lead is the literals' and each output's,
    rendered once per distinct value of its column. A file of a million leads repeats its
    first names and its companies, rarely the pair a text reads: rendering per distinct row
    was a million renderings (~15 us each), three quarters of a plan's CPU."""

    def __init__(self, variants: list[tuple[str | templates.Piece, ...]]) -> None:
        self.variants: list[tuple[int, list[tuple[str, Template, dict[str | None, int]]]]] = [
            (sum(len(p) for p in parts if isinstance(p, str)),
             [(p[0], p[1], {}) for p in parts if not isinstance(p, str)])
            for parts in variants
        ]

    def longest(self, context: Mapping[str, Any]) -> int | None:
        """The longest variant's length for the lead of ``context``; None when an output
        fails or a variant passes MAX_OUTPUT (the whole text then says why)."""
        longest = 0
        for fixed, outputs in self.variants:
            size = fixed
            for column, piece, lengths in outputs:
                value = context.get(column)
                if value == "":
                    value = None  # an empty cell is a missing value (templates._context)
                n = lengths.get(value) if value is None or isinstance(value, str) else -1
                if n is None:
                    n = self._length(column, piece, value)
                    if len(lengths) < LENGTHS_MAX:
                        lengths[value] = n
                if n < 0:
                    return None
                size += n
            if size > MAX_OUTPUT:
                return None
            longest = max(longest, size)
        return longest

    @staticmethod
    def _length(column: str, piece: Template, value: str | None) -> int:
        try:
            return len(templates.render_piece(piece, {} if value is None else {column: value}))
        except templates.TemplateRenderError:
            return -1


def _split(variants: tuple[str, ...]) -> _Split | None:
    parts = [templates.pieces(v) for v in variants]
    return None if any(p is None for p in parts) else _Split([p for p in parts if p is not None])


def _render_failure(
    variant: str, context: Mapping[str, Any], exc: templates.TemplateRenderError
) -> str:
    """The render error in the user's words: the empty column when that is the cause."""
    empty = sorted(
        c for c in templates.variables(variant) if context.get(c) in (None, "")
    )
    for column in empty:
        if f"attribute '{column}'" in str(exc) or f"'{column}'" in str(exc):
            return f"lead.{column} is empty and the text has no default (`| default('...')`)"
    return str(exc)


def _texts(seq: Sequence) -> list[_Text]:
    spec = REGISTRY.get(seq.provider)
    out: list[_Text] = []
    for step in seq.steps:
        if not isinstance(step, ActionStep):
            continue
        for key, value in step.with_.items():
            if not isinstance(value, str):
                continue
            variants = templates.spintax_variants(value)
            columns: set[str] | None = set()
            for variant in variants:
                found = templates.lead_columns(variant)
                if found is None or columns is None:
                    columns = None
                else:
                    columns |= found
            bound = None if spec is None else text_limit(step.action, key, spec)
            out.append(_Text(step.id, key, variants,
                             None if columns is None else tuple(sorted(columns)),
                             bound, seq.provider, split=_split(variants)))
    return out


class RowChecker:
    """Checks the lead rows of one sequence (its texts are analysed once, their renderings
    kept per distinct input: one checker for all the rows of a plan)."""

    def __init__(self, seq: Sequence) -> None:
        self.seq = seq
        self.texts = _texts(seq)

    def check_row(self, row: Mapping[str, str], filename: str, line: int, *,
                  person: bool = False) -> list[Problem]:
        """What would fail for one row (a row of :func:`read_leads`: URL normalized).
        ``person``: a row a search found (``filename`` names the search, ``line`` its rank):
        each problem names the person too, there being no file line to open."""
        # a split text reads single values: the row's own when it has no full_name to split
        # (a million rows: the context's two copies of each cost more than the check)
        quick = row if "full_name" not in row else None
        context: dict[str, Any] | None = None
        out: list[Problem] = []
        for text in self.texts:
            if quick is not None and text.passes(quick):
                continue
            if context is None:
                context = {**lead_data(row), URL_COLUMN: row[URL_COLUMN]}
            message = text.failure(context)
            if message is not None:
                where = f"{person_named(context)}, {text.where}" if person else text.where
                out.append(Problem(filename, line, 1, where, message))
        return out

    def check_file(self, leads: LeadImport) -> dict[str, list[Problem]]:
        """Each failing row of ``leads``, by its (normalized) URL, with its problems."""
        out: dict[str, list[Problem]] = {}
        for row, line in zip(leads.rows, leads.lines, strict=True):
            problems = self.check_row(row, leads.path, line)
            if problems:
                out[row[URL_COLUMN]] = problems
        return out


def person_named(context: Mapping[str, Any]) -> str:
    """A lead as a person reads it: the name the row gives, and the profile URL."""
    name = " ".join(str(context[c]) for c in ("first_name", "last_name") if context.get(c))
    name = name or str(context.get("full_name") or "")
    return f"{name} ({context[URL_COLUMN]})" if name else str(context[URL_COLUMN])


def check_leads(seqs: Iterable[Sequence], leads: LeadImport) -> list[Problem]:
    """Every row of ``leads`` that would fail in any of ``seqs`` (``validate --leads``: no
    store, so every row counts as one to enroll), sorted by line; a row's problems once."""
    found = set(refused_failures(leads))
    for seq in seqs:
        for problems in RowChecker(seq).check_file(leads).values():
            found.update(problems)
    return sorted(found)


def refused_failures(leads: LeadImport) -> list[Problem]:
    """The rows the reader refused that would fail (bad URL or timezone, unreadable row);
    duplicates are warnings, not failures."""
    return [p for p in leads.refused if p.severity == "error"]


# ---- identities ------------------------------------------------------------------------------

ProviderFor = Callable[[str], Provider]


async def check_identities(
    seqs: Iterable[Sequence],
    provider_for: ProviderFor,
    stored_status: Mapping[str, str],
) -> tuple[list[Problem], list[str]]:
    """Problems with the identities the sequences name (at their manifest line), and warnings
    (a provider without credentials: its identities are not checked). ``stored_status``:
    identity -> status in the store (``paused`` by the user, ``auth_expired``)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    verdicts: dict[tuple[str, str], str] = {}
    unconfigured: set[str] = set()
    for seq in seqs:
        try:
            provider = provider_for(seq.provider)
        except ConfigError as exc:
            if seq.provider not in unconfigured:
                unconfigured.add(seq.provider)
                warnings.append(f"{seq.provider} identities not checked: {exc}")
            provider = None
        for n, identity in enumerate(seq.identities):
            where = f"$.spec.identities[{n}]"
            local = stored_status.get(identity, "active")
            if local == "paused":
                problems.append(seq.source.problem(
                    where, f"identity {identity!r} is paused (`seqrun resume --identity "
                           f"{identity}` to resume it)"))
                continue
            if provider is None:
                continue
            verdict = verdicts.get((seq.provider, identity))
            if verdict is None:
                verdict = verdicts[(seq.provider, identity)] = await _status(provider, identity)
            if verdict.startswith("unchecked"):
                warnings.append(f"{seq.provider} identity {identity!r} not checked: "
                                f"{verdict.removeprefix('unchecked: ')}")
            message = _IDENTITY_MESSAGES.get(verdict)
            if message is not None:
                problems.append(seq.source.problem(
                    where, message.format(identity=identity, provider=seq.provider)))
    return problems, warnings


_IDENTITY_MESSAGES = {
    "unknown": "identity {identity!r} is unknown to {provider}",
    "auth_expired": "identity {identity!r} cannot act on {provider}: its LinkedIn session "
                    "expired (AUTH_EXPIRED); reconnect it at the provider",
}


async def _status(provider: Provider, identity: str) -> str:
    try:
        return await provider.identity_status(identity)
    except ProviderError as exc:
        # the provider could not answer (down, unreachable): no verdict on the identity
        return f"unchecked: {exc.label}"
