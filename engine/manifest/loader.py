"""One way in: read, parse, schema-validate, build the frozen model and lint every manifest.

``load(paths)`` returns the manifests or raises one :class:`ManifestError` carrying every
problem found in every file, each as ``file:line:col: $.json.path: message``, sorted by
position. Warnings (from lint) ride along: on :data:`last_warnings`, or returned by
:func:`load_with_warnings`; ``strict=True`` makes them fail the load.

>>> manifests = load(["sequences/"])  # doctest: +SKIP
>>> [m.name for m in manifests]  # doctest: +SKIP
['check-then-message', 'founders-outreach', ...]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal

from engine.errors import ManifestError, Problem
from engine.manifest.explain import closest, did_you_mean, explain_schema_error
from engine.manifest.lint import lint
from engine.manifest.policy import read_dnc_file
from engine.manifest.schemas import KINDS, conforms, max_steps, validator_for
from engine.manifest.yamlio import MAX_BYTES, Document, child_path, read_documents
from engine.model import (
    NOTICE_KINDS,
    ActionStep,
    BranchCase,
    BranchStep,
    Callback,
    Caps,
    CaseExpectation,
    CaseWorld,
    EndStep,
    Experiment,
    ForEach,
    LeadsSource,
    Manifest,
    Metadata,
    Notify,
    PeopleSearch,
    Policy,
    Rollout,
    Schedule,
    SentExpectation,
    SequenceCase,
    SequenceTest,
    SourceMap,
    Step,
    StepError,
    Variant,
    WaitForStep,
    WaitStep,
    Window,
    Workflow,
    WorkflowNode,
)
from engine.model import Sequence as SequenceManifest
from engine.urls import normalize_profile_url
from engine.vocab import LIMIT_ALIASES

__all__ = [
    "API_VERSION",
    "MANIFEST_SUFFIXES",
    "build",
    "explain_schema_error",
    "last_warnings",
    "load",
    "load_with_warnings",
    "manifest_files",
    "parse_duration",
    "parse_hours",
]

API_VERSION = "seqrun/v1"
MANIFEST_SUFFIXES = (".yaml", ".yml")

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

last_warnings: list[Problem] = []


# ---- public API -------------------------------------------------------------------------------


def load(
    paths: Iterable[str | Path], *, strict: bool = False, only_seqrun: bool = False
) -> list[Manifest]:
    """Load every manifest under ``paths`` (files or directories), or raise ``ManifestError``.

    With ``strict=True`` warnings count as errors; with ``only_seqrun=True`` YAML that is not
    a seqrun manifest is skipped (:func:`is_seqrun_yaml`). Warnings of the last call are kept
    in :data:`last_warnings`.
    """
    global last_warnings
    last_warnings = []
    manifests, warnings = load_with_warnings(paths, only_seqrun=only_seqrun)
    last_warnings = warnings
    if strict and warnings:
        raise ManifestError(replace(w, severity="error") for w in warnings)
    return manifests


def load_with_warnings(
    paths: Iterable[str | Path], *, only_seqrun: bool = False
) -> tuple[list[Manifest], list[Problem]]:
    """Like :func:`load` but returns ``(manifests, warnings)``; raises only for errors."""
    problems: list[Problem] = []
    documents: list[Document] = []
    for file in manifest_files(paths, problems):
        if only_seqrun and not is_seqrun_yaml(file):
            continue
        clean, found = read_documents(file)
        if only_seqrun:  # a CI config beside a manifest in one multi-document file
            clean = [d for d in clean if not _foreign(d.data)]
        documents.extend(clean)
        problems.extend(found)

    built: list[tuple[Manifest, bool]] = []
    seen_names: dict[tuple[str, str], tuple[Problem, Any]] = {}
    for doc in documents:
        kind = _check_header(doc, problems)
        if kind is None:
            continue
        naming = _check_unique_name(doc, kind, seen_names, problems)
        if naming == "copy":
            continue
        schema_problems = _too_many_steps(doc, kind) or _schema_problems(doc, kind)
        if schema_problems:
            problems.extend(schema_problems)
            continue
        build_problems: list[Problem] = []
        manifest = _build(kind, doc, build_problems)
        problems.extend(build_problems)
        if manifest is None or build_problems:
            continue
        built.append((manifest, naming == "new"))

    policy = _the_policy([m for m, _ in built], problems)
    manifests: list[Manifest] = []
    for manifest, new in built:
        problems.extend(lint(manifest, policy=policy))
        if new:
            manifests.append(manifest)

    problems.extend(_test_references(manifests))
    if any(p.severity == "error" for p in problems):
        raise ManifestError(problems)
    warnings = sorted(problems)
    manifests.sort(key=lambda m: (m.source.file, m.source.locate("$")))
    return manifests, warnings


def _test_references(manifests: list[Manifest]) -> list[Problem]:
    """Every step a SequenceTest names (in a path, a sent text, a scripted error) must be a
    step of the Sequence it tests (loaded here when it was not among ``manifests``)."""
    tests = [m for m in manifests if isinstance(m, SequenceTest) and m.sequence.is_file()]
    if not tests:
        return []
    by_file = {Path(m.source.file).resolve(): m for m in manifests
               if isinstance(m, SequenceManifest)}
    problems: list[Problem] = []
    for test in tests:
        target = by_file.get(test.sequence.resolve())
        if target is None:
            try:
                loaded = load_with_warnings([test.sequence])[0]
            except ManifestError:
                loaded = []  # its own problems show when it is validated itself
            target = next((m for m in loaded if isinstance(m, SequenceManifest)), None)
        if target is None:
            problems.append(test.source.problem(
                "$.spec.sequence", f"{test.sequence} holds no valid Sequence to test"))
            continue
        steps = [s.id for s in target.steps]
        for case in test.cases:
            named = [(f"{case.path}.expect.path", s) for s in case.expect.path or ()]
            named += [(f"{case.path}.expect.sent", s.step) for s in case.expect.sent or ()]
            named += [(f"{case.path}.world.errors", e.step) for e in case.world.errors]
            named += [(f"{case.path}.variant", s) for s in case.variants]
            for where, step in named:
                if step not in steps:
                    problems.append(test.source.problem(where, (
                        f"{target.name} has no step {step!r}{did_you_mean(step, steps)}")))
            problems.extend(_test_variants(test, case, target))
    return problems


def _test_variants(test: SequenceTest, case: SequenceCase,
                   target: SequenceManifest) -> list[Problem]:
    """Every variant a case forces or expects must be a variant of that step."""
    named = [(child_path(f"{case.path}.variant", step), step, name)
             for step, name in case.variants.items()]
    named += [(f"{case.path}.expect.sent[{i}].variant", s.step, s.variant)
              for i, s in enumerate(case.expect.sent or ()) if s.variant is not None]
    problems = []
    for where, step_id, name in named:
        step = next((s for s in target.steps if s.id == step_id), None)
        if step is None:
            continue  # reported as an unknown step
        names = [v.name for v in step.variants] if isinstance(step, ActionStep) else []
        if name not in names:
            has = f"its variants are {', '.join(names)}" if names else "it has no variants"
            problems.append(test.source.problem(where, (
                f"step {step_id!r} of {target.name} has no variant {name!r} ({has})")))
    return problems
_SEQRUN_API = re.compile(rb"""apiVersion['"]?\s*:\s*['"]?seqrun/""")


def is_seqrun_yaml(path: Path) -> bool:
    """Whether a YAML file says ``apiVersion: seqrun/...`` somewhere (a broken manifest still
    does: it is validated and its problems shown); an unreadable file is kept (the loader
    reports it). What the pre-commit hook validates of the YAML a commit touches."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_BYTES)
    except OSError:
        return True
    return _SEQRUN_API.search(head) is not None


def _foreign(data: Any) -> bool:
    """A document that is another tool's (its apiVersion is not seqrun's); one without an
    apiVersion is kept, and reported."""
    api = data.get("apiVersion") if isinstance(data, dict) else None
    return isinstance(api, str) and not api.startswith("seqrun/")


def manifest_files(paths: Iterable[str | Path], problems: list[Problem]) -> list[Path]:
    """Files named, and every ``*.yaml``/``*.yml`` under directories named (sorted, no dot-dirs)."""
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in MANIFEST_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                problems.append(Problem(str(path), 1, 1, "$", "no *.yaml or *.yml files here"))
        elif path.exists():
            found = [path]
        else:
            problems.append(Problem(str(path), 1, 1, "$", "no such file or directory"))
            found = []
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``3d``, ``1w``, ``1d12h`` -> timedelta; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r}")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_hours(text: str) -> tuple[time, time]:
    """``"09:00-18:00"`` -> (09:00, 18:00); ``24:00`` as an end means the end of the day."""
    start_text, _, end_text = text.partition("-")
    start = _clock(start_text)
    end = time(23, 59, 59) if end_text == "24:00" else _clock(end_text)
    return start, end


def _the_policy(manifests: list[Manifest], problems: list[Problem]) -> Policy | None:
    """The one Policy among ``manifests`` (lint reads its identity tiers); a second one is
    an error (one Policy per repository or directory: the guardrails are the organisation's)."""
    policies = [m for m in manifests if isinstance(m, Policy)]
    for extra in policies[1:]:
        first = policies[0].source.problem("$", "")
        message = (
            f"a second Policy ({extra.name!r}; the first is {policies[0].name!r} at "
            f"{first.file}:{first.line}): keep one Policy per repository"
        )
        problems.append(extra.source.problem("$.metadata.name", message))
    return policies[0] if policies else None


# ---- header, names ----------------------------------------------------------------------------


def _check_header(doc: Document, problems: list[Problem]) -> str | None:
    data, src = doc.data, doc.source
    if not isinstance(data, dict):
        problems.append(
            src.problem("$", "a manifest must be a mapping with apiVersion, kind, metadata, spec")
        )
        return None
    ok = True
    api = data.get("apiVersion")
    if api is None:
        problems.append(src.problem("$", f"missing apiVersion (expected {API_VERSION})"))
        ok = False
    elif api != API_VERSION:
        problems.append(
            src.problem("$.apiVersion", f"unknown apiVersion {api!r} (expected {API_VERSION})")
        )
        ok = False
    kind = data.get("kind")
    if kind is None:
        problems.append(src.problem("$", f"missing kind (expected one of: {', '.join(KINDS)})"))
        return None
    if kind not in KINDS:
        hint = closest(kind, KINDS, ignore_case=True) if isinstance(kind, str) else None
        tail = f"did you mean {hint!r}?" if hint else f"expected one of: {', '.join(KINDS)}"
        problems.append(src.problem("$.kind", f"unknown kind {kind!r} ({tail})"))
        return None
    return str(kind) if ok else None


def _check_unique_name(
    doc: Document,
    kind: str,
    seen: dict[tuple[str, str], tuple[Problem, Any]],
    problems: list[Problem],
) -> Literal["new", "copy", "clash"]:
    """Whether ``doc`` takes a new name, repeats an earlier manifest, or clashes with one.

    A second, different manifest with a taken name is an error (and is still checked); an
    identical copy (the same example reached through two paths) is loaded once, with a warning.
    """
    metadata = doc.data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return "new"
    here = doc.source.problem("$.metadata.name", "")
    first, first_data = seen.setdefault((kind, name), (here, doc.data))
    if first is here:
        return "new"
    where = f"{first.file}:{first.line}"
    if first_data == doc.data:
        message = f"identical copy of {kind} {name!r} from {where}, loaded once"
        problems.append(replace(here, message=message, severity="warning"))
        return "copy"
    message = f"duplicate {kind} name {name!r} (first defined at {where})"
    problems.append(replace(here, message=message))
    return "clash"


# ---- schema errors -> problems ----------------------------------------------------------------

_NOT_ALLOWED = " is not allowed in "
_ONE_KIND = "a step needs exactly one of"


def _too_many_steps(doc: Document, kind: str) -> list[Problem]:
    """A Sequence over the schema's ``maxItems`` of steps, refused before the schema walks
    each of them (thousands of steps cost seconds in the validator and the template checks,
    and a pre-commit hook must stay fast on any pull request)."""
    spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
    steps = spec.get("steps") if isinstance(spec, dict) else None
    limit = max_steps(kind)
    if limit is None or not isinstance(steps, list) or len(steps) <= limit:
        return []
    message = (
        f"{len(steps)} steps: a Sequence holds at most {limit} (split the campaign into "
        "several sequences)"
    )
    return [doc.source.problem("$.spec.steps", message)]


def _schema_problems(doc: Document, kind: str) -> list[Problem]:
    """Every schema error of ``doc``, explained, without the echoes of one mistake.

    An unknown key is also "not allowed" for the step kind, and a step with two kinds has
    keys "not allowed" for each: only the more telling problem is kept.
    """
    if conforms(kind, doc.data):
        return []
    errors = validator_for(kind).iter_errors(doc.data)
    found = {p for e in errors for p in explain_schema_error(e, doc)}
    unknown = {p.path for p in found if "unknown key" in p.message}
    confused = {p.path for p in found if _ONE_KIND in p.message}
    kept = [
        p
        for p in found
        if _NOT_ALLOWED not in p.message
        or (p.path not in unknown and not any(p.path.startswith(c + ".") for c in confused))
    ]
    return sorted(kept)


# ---- model building ---------------------------------------------------------------------------


def _clock(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


class _Builder:
    def __init__(self, doc: Document, problems: list[Problem]) -> None:
        self.doc = doc
        self.src: SourceMap = doc.source
        self.problems = problems

    def duration(
        self, text: str, path: str, *, step: str | None = None, allow_zero: bool = False
    ) -> timedelta:
        value = parse_duration(text)
        if not value and not allow_zero:
            where = f"in step {step!r}: " if step else ""
            message = f"{where}a duration must be greater than zero"
            self.problems.append(self.src.problem(path, message))
        return value

    def metadata(self) -> Metadata:
        meta = self.doc.data["metadata"]
        return Metadata(name=meta["name"], labels=dict(meta.get("labels", {})))

    def sequence(self) -> SequenceManifest:
        data = self.doc.data
        spec = data["spec"]
        leads = LeadsSource()
        if "leads" in spec and "csv" in spec["leads"]:
            base = Path(self.src.file).absolute().parent
            leads = LeadsSource(csv=Path(os.path.normpath(base / spec["leads"]["csv"])))
        if "leads" in spec and "search" in spec["leads"]:
            leads = LeadsSource(csv=leads.csv, search=_search(spec["leads"]["search"]))
        window = _window(spec.get("window"))
        limits: dict[str, int] = {}
        named: dict[str, str] = {}
        for key, count in spec.get("limits", {}).items():
            action = LIMIT_ALIASES.get(key, key)
            if action in limits:
                message = f"limit for {action!r} given twice (as {named[action]!r} and {key!r})"
                self.problems.append(self.src.problem(f"$.spec.limits.{key}", message))
            limits[action] = count
            named.setdefault(action, key)
        cooldown = None
        if "cooldown" in spec:
            cooldown = self.duration(spec["cooldown"], "$.spec.cooldown", allow_zero=True)
        steps = tuple(self.step(raw, f"$.spec.steps[{i}]") for i, raw in enumerate(spec["steps"]))
        caps = Caps(**{k: spec.get("caps", {}).get(k) for k in ("max_enroll", "max_sends_per_day")})
        rollout = None
        if "rollout" in spec:
            r = spec["rollout"]
            promote = r.get("promote_if", {})
            rollout = Rollout(
                canary=r["canary"],
                hold=self.duration(r["hold"], "$.spec.rollout.hold", allow_zero=True),
                failed_rate_below=promote.get("failed_rate_below"),
                reply_rate_above=promote.get("reply_rate_above"),
            )
        return SequenceManifest(
            metadata=self.metadata(),
            provider=spec["provider"],
            identities=tuple(spec["identities"]),
            steps=steps,
            leads=leads,
            window=window,
            limits=limits,
            cooldown=cooldown,
            on=dict(spec.get("on", {})),
            migrate=dict(spec.get("migrate", {})),
            api=spec.get("api", "current"),
            caps=caps,
            rollout=rollout,
            normalized=data,
            source=self.src,
            execution=spec.get("execution", "live"),
            notify=_notify(spec.get("notify")),
            sync_force=(spec.get("sync") or {}).get("force"),
        )

    def policy(self) -> Policy:
        spec = self.doc.data["spec"]
        dnc = spec.get("do_not_contact", {})
        urls: set[str] = set()
        for i, raw in enumerate(dnc.get("urls", [])):
            try:
                urls.add(normalize_profile_url(raw))
            except ValueError as exc:
                path = f"$.spec.do_not_contact.urls[{i}]"
                self.problems.append(self.src.problem(path, f"not a profile URL: {exc}"))
        domains = set(dnc.get("domains", []))
        base = Path(self.src.file).absolute().parent
        for raw in dnc.get("files", []):
            shown = os.path.normpath(Path(self.src.file).parent / raw)
            found_urls, found_domains = read_dnc_file(
                Path(os.path.normpath(base / raw)), shown, self.problems
            )
            urls |= found_urls
            domains |= found_domains
        voice = spec.get("one_lead_one_voice")
        frequency = spec.get("frequency")
        quiet: set[date] = set()
        for i, raw in enumerate(spec.get("quiet_days", [])):
            try:
                quiet.add(date.fromisoformat(raw))
            except ValueError:
                message = f"{raw!r} is not a calendar date"
                self.problems.append(self.src.problem(f"$.spec.quiet_days[{i}]", message))
        return Policy(
            metadata=self.metadata(),
            dnc_urls=frozenset(urls),
            dnc_domains=frozenset(domains),
            one_voice=None if voice is None else self.duration(
                voice["lookback"], "$.spec.one_lead_one_voice.lookback",
                allow_zero=True,
            ),
            max_touches=None if frequency is None else frequency["max_touches"],
            touch_window=None if frequency is None else self.duration(
                frequency["per"], "$.spec.frequency.per"
            ),
            budgets={LIMIT_ALIASES.get(k, k): v for k, v in spec.get("budgets", {}).items()},
            quiet_days=frozenset(quiet),
            timezone=spec.get("timezone", "UTC"),
            tiers=dict(spec.get("identities", {})),
            normalized=self.doc.data,
            source=self.src,
            notify=_notify(spec.get("notify")),
        )

    def step(self, raw: dict[str, Any], path: str) -> Step:
        sid = raw["id"]
        if "action" in raw:
            return ActionStep(
                id=sid,
                action=raw["action"],
                with_=dict(raw.get("with", {})),
                on=dict(raw.get("on", {})),
                next=raw.get("next"),
                path=path,
                variants=tuple(_variant(v) for v in raw.get("variants", [])),
                experiment=_experiment(raw["experiment"]) if "experiment" in raw else None,
                execution=raw.get("execution"),
            )
        if "wait" in raw:
            return WaitStep(
                id=sid,
                duration=self.duration(raw["wait"], f"{path}.wait", step=sid),
                next=raw.get("next"),
                path=path,
            )
        if "wait_for" in raw:
            return WaitForStep(
                id=sid,
                event=raw["wait_for"],
                timeout=self.duration(raw["timeout"], f"{path}.timeout", step=sid),
                on_timeout=raw["on_timeout"],
                next=raw.get("next"),
                path=path,
            )
        if "branch" in raw:
            cases = tuple(BranchCase(condition=c["if"], goto=c["goto"]) for c in raw["branch"])
            return BranchStep(id=sid, cases=cases, else_=raw.get("else"), path=path)
        return EndStep(id=sid, terminal=raw["end"], path=path)

    def workflow(self) -> Workflow:
        data = self.doc.data
        spec = data["spec"]
        root_is_list = isinstance(spec["steps"], list)
        roots = spec["steps"] if root_is_list else [spec["steps"]]
        root = tuple(
            self.node(n, f"$.spec.steps[{i}]" if root_is_list else "$.spec.steps")
            for i, n in enumerate(roots)
        )
        return Workflow(
            metadata=self.metadata(),
            provider=spec["provider"],
            root=root,
            root_is_list=root_is_list,
            result_handling=spec.get("result_handling", "long"),
            api=spec.get("api", "current"),
            identities=tuple(spec.get("identities", ())),
            webhook=spec.get("webhook"),
            normalized=data,
            source=self.src,
            for_each=self.for_each(spec.get("for_each")),
            window=_window(spec.get("window")),
        )

    def for_each(self, raw: dict[str, Any] | None) -> ForEach | None:
        if raw is None:
            return None
        csv = None
        if "csv" in raw:
            csv = Path(os.path.normpath(Path(self.src.file).absolute().parent / raw["csv"]))
        return ForEach(csv=csv, sequence=raw.get("sequence"), state=raw.get("state"))

    def node(self, raw: dict[str, Any], path: str) -> WorkflowNode:
        then = raw.get("then")
        then_is_list = isinstance(then, list)
        children: tuple[WorkflowNode, ...] = ()
        if isinstance(then, list):
            children = tuple(self.node(c, f"{path}.then[{i}]") for i, c in enumerate(then))
        elif isinstance(then, dict):
            children = (self.node(then, f"{path}.then"),)
        return WorkflowNode(
            action=raw["action"],
            with_=dict(raw.get("with", {})),
            label=raw.get("label"),
            then=children,
            then_is_list=then_is_list,
            path=path,
        )

    def schedule(self) -> Schedule:
        data = self.doc.data
        spec = data["spec"]
        callback = None
        if "callback" in spec:
            cb = spec["callback"]
            callback = Callback(
                url=cb["url"], headers=dict(cb.get("headers", {})), on=cb.get("on", "all")
            )
        return Schedule(
            metadata=self.metadata(),
            provider=spec["provider"],
            action=spec["action"],
            identities=tuple(spec["identities"]),
            cron=spec.get("cron"),
            timezone=spec.get("timezone", "UTC"),
            mode=spec.get("mode", "schedule"),
            schedule_at=spec.get("schedule_at"),
            inputs=tuple(dict(i) for i in spec.get("inputs", [])),
            parameters=dict(spec.get("parameters", {})),
            callback=callback,
            normalized=data,
            source=self.src,
        )


    # ---- SequenceTest ----------------------------------------------------------------------

    def sequence_test(self) -> SequenceTest:
        spec = self.doc.data["spec"]
        base = Path(self.src.file).absolute().parent
        target = Path(os.path.normpath(base / spec["sequence"]))
        if not target.is_file():
            self.problems.append(self.src.problem(
                "$.spec.sequence", f"no Sequence manifest at {spec['sequence']!r} (a file "
                "relative to this test)"))
        until = self.duration(spec.get("until", "30d"), "$.spec.until")
        cases = tuple(self.case(raw, f"$.spec.cases[{i}]", until)
                      for i, raw in enumerate(spec["cases"]))
        names = [c.name for c in cases]
        for i, name in enumerate(names):
            if name in names[:i]:
                self.problems.append(self.src.problem(f"$.spec.cases[{i}].name",
                                                      f"duplicate case name {name!r}"))
        return SequenceTest(metadata=self.metadata(), sequence=target, cases=cases,
                            start=spec.get("start"), normalized=self.doc.data, source=self.src)

    def case(self, raw: dict[str, Any], path: str, until: timedelta) -> SequenceCase:
        if "until" in raw:
            until = self.duration(raw["until"], f"{path}.until")
        return SequenceCase(name=raw["name"], lead=dict(raw.get("lead", {})),
                            world=self.world(raw.get("world", {}), f"{path}.world"),
                            expect=self.expectation(raw["expect"]), until=until, path=path,
                            count=int(raw.get("count", 1)),
                            variants=dict(raw.get("variant", {})))

    def world(self, raw: dict[str, Any], path: str) -> CaseWorld:
        def span(key: str, where: str) -> timedelta | None:
            return None if key not in raw else self.duration(raw[key], f"{where}.{key}",
                                                              allow_zero=True)

        auth = raw.get("auth_expired", {})
        return CaseWorld(
            accepts_after=span("accepts_after", path),
            replies_after=span("replies_after", path),
            already_connected=bool(raw.get("already_connected", False)),
            writes_first=span("writes_first", path),
            inaccessible=bool(raw.get("inaccessible", False)),
            auth_expired=parse_duration(auth["at"]) if "at" in auth else None,
            auth_restored=parse_duration(auth["restored"]) if "restored" in auth else None,
            errors=tuple(StepError(e["step"], e["error"], int(e.get("times", 1)))
                         for e in raw.get("errors", [])),
        )

    @staticmethod
    def expectation(raw: dict[str, Any]) -> CaseExpectation:
        sent = None
        if "sent" in raw:
            sent = tuple(SentExpectation(s["step"], s.get("text"), s.get("contains"),
                                         s.get("variant"))
                         for s in raw["sent"])
        return CaseExpectation(
            path=tuple(raw["path"]) if "path" in raw else None,
            terminal=raw.get("terminal"),
            sent=sent,
            within_window=bool(raw.get("within_window", True)),
            within_limits=bool(raw.get("within_limits", True)),
        )


def _variant(raw: Mapping[str, Any]) -> Variant:
    texts = {k: v for k, v in raw.items() if k not in ("name", "weight")}
    return Variant(name=raw["name"], with_=texts, weight=float(raw.get("weight", 1)))


def _experiment(raw: Mapping[str, Any]) -> Experiment:
    defaults = Experiment(metric=raw["metric"])
    return Experiment(
        metric=raw["metric"],
        min_sample=int(raw.get("min_sample", defaults.min_sample)),
        alpha=float(raw.get("alpha", defaults.alpha)),
        auto_promote=bool(raw.get("auto_promote", defaults.auto_promote)),
    )


def build(
    kind: str, data: Mapping[str, Any], source: SourceMap, *, validate: bool = True
) -> Manifest:
    """The frozen model of one manifest's parsed ``data`` (``kind``: Sequence, Workflow,
    Schedule, Policy).

    ``data`` is checked against the kind's schema first unless ``validate=False`` (for data
    that was validated when it was stored, e.g. a revision's manifest). Raises
    :class:`ManifestError` for an unknown kind, schema errors or build problems (a zero
    duration). It does not lint: :func:`load` does.

    >>> seq = build("Sequence", row.manifest, SourceMap("<revision r1>"))  # doctest: +SKIP
    >>> seq.name  # doctest: +SKIP
    'founders-outreach'
    """
    doc = Document(dict(data), source)
    if kind not in KINDS:
        raise ManifestError([source.problem("$.kind", f"unknown kind {kind!r}")])
    problems = _schema_problems(doc, kind) if validate else []
    manifest = None if problems else _build(kind, doc, problems)
    if manifest is None or problems:
        raise ManifestError(problems)
    return manifest


def _build(kind: str, doc: Document, problems: list[Problem]) -> Manifest | None:
    """Build without raising: problems are appended (kept for engine.run.runner; prefer build)."""
    builder = _Builder(doc, problems)
    if kind == "Sequence":
        return builder.sequence()
    if kind == "Workflow":
        return builder.workflow()
    if kind == "Schedule":
        return builder.schedule()
    if kind == "SequenceTest":
        return builder.sequence_test()
    if kind == "Policy":
        return builder.policy()
    return None  # pragma: no cover - _check_header admits only KINDS


def _window(w: dict[str, Any] | None) -> Window | None:
    """A Sequence's or a Workflow's ``window:`` (shape checked by the schema)."""
    if w is None:
        return None
    start, end = parse_hours(w["hours"]) if "hours" in w else (time(0, 0), time(23, 59, 59))
    defaults = Window()
    return Window(
        timezone=w.get("timezone", defaults.timezone),
        fallback_timezone=w.get("fallback_timezone", defaults.fallback_timezone),
        days=tuple(w.get("days", defaults.days)),
        start=start,
        end=end,
    )


def _notify(raw: dict[str, Any] | None) -> Notify | None:
    """A Sequence's or the Policy's ``notify:`` (validated by the schema: a url or a
    command)."""
    if raw is None:
        return None
    return Notify(url=raw.get("url"), secret_env=raw.get("secret_env"),
                  header=raw.get("header", Notify.header), command=tuple(raw.get("command", ())),
                  events=frozenset(raw.get("events", NOTICE_KINDS)))


def _search(raw: dict[str, Any]) -> PeopleSearch:
    """``leads.search`` (shape checked by the schema, filters per provider by lint)."""
    return PeopleSearch(keywords=raw.get("keywords"), title=raw.get("title"),
                        company=raw.get("company"), location=raw.get("location"),
                        network=tuple(raw.get("network", ())), max=raw.get("max", 25),
                        identity=raw.get("identity"))
