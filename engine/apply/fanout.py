"""Workflow fan-out: a Workflow with ``for_each: {csv: FILE}`` runs once per lead.

Each lead gets its own Workflow, ``NAME[handle]`` (the profile's handle: stable when the CSV
is edited or reordered), whose ``with`` values are rendered as templates over the lead's row.
Each child is an ordinary Workflow: planned (``run`` / ``resume`` / ``unchanged``), run with
the same exactly-once journal (its record is persisted before its submission; a kill mid-run
resumes it, never submits it twice), shown by ``seqrun why workflow/NAME[handle]``. A bad row
(URL, duplicate) or a template that cannot render for a row is refused, named by
``file:line``; the other rows run.

>>> child_name("invite-all", "https://www.linkedin.com/in/ada-lovelace-0001")
'invite-all[ada-lovelace-0001]'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import Problem
from engine.manifest.leads import URL_COLUMN, read_leads
from engine.manifest.templates import TemplateRenderError, render
from engine.model import Manifest, Metadata, Workflow, WorkflowNode
from engine.urls import normalize_profile_url, profile_handle

PARENT_LABEL = "seqrun/for-each"  # the child's label naming its fan-out Workflow


def child_name(parent: str, profile_url: str) -> str:
    return f"{parent}[{profile_handle(profile_url)}]"


@dataclass(frozen=True)
class FanOut:
    """A fan-out Workflow's children (in CSV order) and the rows refused."""

    parent: str
    children: tuple[Workflow, ...] = ()
    leads: Mapping[str, str] = field(default_factory=dict)  # child name -> profile URL
    lines: Mapping[str, int] = field(default_factory=dict)  # child name -> CSV line
    refused: tuple[Problem, ...] = ()


def _render_value(value: Any, row: Mapping[str, str], seed: str) -> Any:
    return render(value, row, seed) if isinstance(value, str) else value


def _render_node(node: WorkflowNode, row: Mapping[str, str], seed: str) -> WorkflowNode:
    with_ = {k: _render_value(v, row, seed) for k, v in node.with_.items()}
    if isinstance(with_.get("personUrl"), str):
        with_["personUrl"] = normalize_profile_url(with_["personUrl"])
    return replace(node, with_=with_,
                   then=tuple(_render_node(c, row, seed) for c in node.then))


def expand(wf: Workflow) -> FanOut:
    """The children of ``wf`` (one per taken row); LeadsError when the CSV cannot be read."""
    assert wf.for_each is not None
    leads = read_leads(wf.for_each)
    children: list[Workflow] = []
    names: dict[str, str] = {}
    lines: dict[str, int] = {}
    refused = list(leads.refused)
    for row, line in zip(leads.rows, leads.lines, strict=True):
        name = child_name(wf.name, row[URL_COLUMN])
        try:
            root = tuple(_render_node(n, row, name) for n in wf.root)
        except (TemplateRenderError, ValueError) as exc:
            refused.append(Problem(leads.path, line, 1, "$", f"{row[URL_COLUMN]}: {exc}"))
            continue
        labels = {**wf.metadata.labels, PARENT_LABEL: wf.name}
        children.append(replace(wf, metadata=Metadata(name, labels), root=root, for_each=None,
                                normalized={}))
        names[name] = row[URL_COLUMN]
        lines[name] = line
    return FanOut(wf.name, tuple(children), names, lines, tuple(refused))


def runnable(manifests: Iterable[Manifest]) -> list[Workflow]:
    """The Workflows to plan and run: each fan-out replaced by its children."""
    out: list[Workflow] = []
    for m in manifests:
        if isinstance(m, Workflow):
            out += list(expand(m).children) if m.for_each is not None else [m]
    return out
