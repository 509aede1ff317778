"""A/B variants and experiments: the manifest (schema, loader, lint), the assignment of a
variant to a lead, the statistics (checked against the sandbox's own probability model),
and one simulated campaign of 2,000 leads where the sandbox knows the truth."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import ManifestError
from engine.experiments import decide, look_alpha, look_of
from engine.manifest.loader import load
from engine.model import ActionStep, Experiment, Sequence, Variant
from engine.sandbox.world.config import TextRule, WorldConfig
from engine.store import Store
from engine.variants import assign, chosen, texts

HEADER = """apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: ab
spec:
  provider: edges
  identities: [ident-alice]
  steps:
"""
GOOD_STEPS = """    - id: connect
      action: connect
      variants:
        - name: plain
          note: "Hi {{ lead.first_name }}"
        - name: specific
          weight: 3
          note: "Hi {Ada|there}, about {{ lead.company_name }}"
      experiment: {metric: acceptance_rate, min_sample: 50}
      "on":
        ALREADY_CONNECTED: completed
    - id: accepted
      wait_for: connection_accepted
      timeout: 7d
      on_timeout: completed
    - id: intro
      action: send_inmail
      with:
        subject: "A question"
      variants:
        - {name: a, text: "Hi {{ lead.first_name }}, a question?"}
        - {name: b, text: "Hi {{ lead.first_name }}, a short call?"}
      experiment: {metric: reply_rate, min_sample: 200, auto_promote: true, alpha: 0.01}
"""


def _load(tmp_path: Path, steps: str) -> Sequence:
    path = tmp_path / "ab.yaml"
    path.write_text(HEADER + steps, encoding="utf-8")
    (seq,) = load([path], strict=True)
    assert isinstance(seq, Sequence)
    return seq


def _errors(tmp_path: Path, steps: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(HEADER + steps, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load([path])
    return [str(p) for p in info.value.problems]


def test_the_loader_builds_frozen_variants_and_experiments(tmp_path: Path) -> None:
    seq = _load(tmp_path, GOOD_STEPS)
    connect, intro = seq.steps[0], seq.steps[2]
    assert isinstance(connect, ActionStep) and isinstance(intro, ActionStep)
    assert [(v.name, v.weight) for v in connect.variants] == [("plain", 1.0), ("specific", 3.0)]
    assert connect.experiment == Experiment("acceptance_rate", min_sample=50)
    assert intro.experiment == Experiment("reply_rate", 200, 0.01, auto_promote=True)
    b = intro.variant("b")
    assert b is not None
    assert texts(intro, b) == {"subject": "A question", "text": b.with_["text"]}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("""    - id: visit
      action: visit_profile
      variants: [{name: a}, {name: b}]
""", "visit_profile sends no text to vary"),
        ("""    - id: hi
      action: send_inmail
      with: {text: "Hi"}
      experiment: {metric: reply_rate}
""", "an experiment needs `variants:`"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}, {name: a, text: "y"}]
""", "variant name 'a' is used twice"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}, {name: b, note: "y"}]
""", "a send_inmail variant carries 'text' or 'subject', not 'note'"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}, {name: b, subject: "y"}]
""", "variant 'b' has no text"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}, {name: b, text: "y"}]
      experiment: {metric: acceptance_rate}
""", "only a connect step has it"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x {{ lead.first_name"}, {name: b, text: "y"}]
""", "$.spec.steps[0].variants[0].text"),
        ("""    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}]
""", "$.spec.steps[0].variants"),
    ],
)
def test_lint_names_each_mistake_where_it_is(tmp_path: Path, steps: str, expected: str) -> None:
    problems = _errors(tmp_path, steps)
    assert any(expected in p for p in problems), problems
    assert all(":" in p.split(" ")[0] for p in problems)  # file:line:col first


def test_a_message_step_with_variants_needs_no_with_text_but_one_without_does(
    tmp_path: Path,
) -> None:
    _load(tmp_path, """    - id: hi
      action: send_inmail
      variants: [{name: a, text: "x"}, {name: b, text: "y"}]
""")
    assert any("'text' is a required property" in p or "text" in p
               for p in _errors(tmp_path, """    - id: hi
      action: send_inmail
      with: {subject: "no text"}
"""))


# ---- assignment -------------------------------------------------------------------------------

URLS = [f"https://www.linkedin.com/in/lead-{i:05d}" for i in range(4000)]


def _step(*variants: Variant, sid: str = "intro") -> ActionStep:
    return ActionStep(sid, "send_message", {"text": "x"}, variants=variants)


def test_assignment_is_stable_across_revisions_and_follows_the_weights() -> None:
    v1 = _step(Variant("a", {"text": "Hello"}), Variant("b", {"text": "Hi"}, weight=3))
    # a new revision: texts rewritten, the list reordered, the URL spelt another way
    v2 = _step(Variant("b", {"text": "Hi there"}, weight=3), Variant("a", {"text": "Hey"}))
    first = [assign(v1, "seq", u).name for u in URLS]
    assert first == [assign(v2, "seq", u.replace("https://www.", "http://")).name for u in URLS]
    assert first == [assign(v1, "seq", u).name for u in URLS]  # a re-run
    share = Counter(first)["b"] / len(URLS)
    assert 0.72 < share < 0.78  # weight 3 of 4
    # another step or sequence draws independently
    other = [assign(v1, "other", u).name for u in URLS]
    assert other != first


def test_a_promoted_winner_replaces_everyone_s_variant() -> None:
    step = _step(Variant("a"), Variant("b"))
    assert {chosen(step, "s", u, "b").name for u in URLS[:50]} == {"b"}  # type: ignore[union-attr]
    assert chosen(ActionStep("v", "visit_profile"), "s", URLS[0]) is None


# ---- statistics against the sandbox's own probability model ------------------------------------

A_TEXT, B_TEXT = "a question about outbound?", "worth a short call?"


def _looks(config: WorldConfig, seed: int, experiment: Experiment, per_variant: int) -> str | None:
    """The winner called over the look schedule (or None) on leads drawn from the world's
    reply model: each lead replies with ``config.reply_for`` of the text it was sent."""
    rng = random.Random(seed)
    draws = {name: [rng.random() < config.reply_for([text]) for _ in range(per_variant)]
             for name, text in (("a", A_TEXT), ("b", B_TEXT))}
    look = 0
    while experiment.min_sample * 2**look <= per_variant:
        n = experiment.min_sample * 2**look
        counts = [(name, n, sum(d[:n])) for name, d in draws.items()]
        verdict = decide(counts, experiment, look=look)
        if verdict.winner is not None:
            return verdict.winner
        look += 1
    return None


EXPERIMENT = Experiment("reply_rate", min_sample=200, auto_promote=True)


def test_twice_the_reply_probability_is_called_the_winner_in_nearly_every_seed() -> None:
    """1,000 leads a variant (a 2,000-lead campaign): the looks at 200, 400 and 800 find b in
    199 of 200 seeds (seed 9 draws a at 15.5 % and b at 14.5 % over its first 200); a is
    never called."""
    truth = WorldConfig(reply_probability=0.1,
                        by_text=(TextRule("short call", reply_probability=0.2),))
    winners = [_looks(truth, seed, EXPERIMENT, 1000) for seed in range(20)]
    assert winners.count("b") >= 19 and "a" not in winners


def test_equal_probabilities_call_no_winner_in_at_least_95_percent_of_seeds() -> None:
    """Looks at 200, 400, 800 and 1,600 leads a variant: 5 false winners in 200 seeds
    (2.5 %, under the 5 % the looks spend together)."""
    truth = WorldConfig(reply_probability=0.15)
    winners = [_looks(truth, seed, EXPERIMENT, 1600) for seed in range(20)]
    assert sum(w is not None for w in winners) <= 1


def test_the_look_schedule_spends_at_most_alpha() -> None:
    assert [look_of(n, 200) for n in (199, 200, 399, 400, 800, 1700)] == [None, 0, 0, 1, 2, 3]
    assert sum(look_alpha(0.05, j) for j in range(30)) < 0.05
    verdict = decide([("a", 150, 15), ("b", 150, 45)], EXPERIMENT, look=None)
    assert verdict.winner is None and verdict.best == "b"  # below min_sample: no call
    assert verdict.next_look == 200 and verdict.needed is not None


# ---- a simulated campaign of 2,000 leads -----------------------------------------------------

IDENTITIES = [f"ident-{i:02d}" for i in range(10)]


def _campaign(tmp_path: Path, text_b: str, leads: int = 2000) -> Path:
    with (tmp_path / "leads.csv").open("w", encoding="utf-8") as fh:
        fh.write("linkedin_profile_url,first_name\n")
        for i in range(leads):
            fh.write(f"https://www.linkedin.com/in/lead-ab-{i:05d},Lead{i}\n")
    seq = tmp_path / "ab.yaml"
    seq.write_text(f"""apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: ab-2k
spec:
  provider: edges
  identities: [{", ".join(IDENTITIES)}]
  leads:
    csv: leads.csv
  "on":
    reply: replied
  steps:
    - id: intro
      action: send_inmail
      variants:
        - {{name: a, text: "Hi {{{{ lead.first_name }}}}, {A_TEXT}"}}
        - {{name: b, text: "Hi {{{{ lead.first_name }}}}, {text_b}"}}
      experiment: {{metric: reply_rate, min_sample: 200, auto_promote: true}}
    - id: wait-reply
      wait_for: reply
      timeout: 3d
      on_timeout: completed
      next: replied
""", encoding="utf-8")
    identities = "\n".join(f"  - {{uid: {u}, provider: edges, kind: sales_navigator}}"
                           for u in IDENTITIES)
    (tmp_path / "world.yaml").write_text(f"""seed: 3
identities:
{identities}
behaviour:
  inaccessible_fraction: 0
  writes_first_fraction: 0
  already_connected_fraction: 0
  reply_probability: 0.1
  reply_delay_hours: [1, 12]
  by_text:
    - contains: "short call"
      reply_probability: 0.2
""", encoding="utf-8")
    return seq


def test_a_2000_lead_campaign_calls_b_the_winner_and_stops_sending_a(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = _campaign(tmp_path, B_TEXT)
    state = tmp_path / "state"
    rc = main(["simulate", str(seq), "--scenario", str(tmp_path / "world.yaml"),
               "--until", "+8d", "--keep", str(state), "-o", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    (status,) = out["status"]["sequences"]
    (experiment,) = status["experiments"]
    assert experiment["decision"]["winner"] == "b" and experiment["promoted"] == "b"
    assert experiment["decision"]["p_value"] < experiment["decision"]["alpha"]
    rates = {v["name"]: v["reply_rate"] for v in experiment["variants"]}
    assert rates["b"]["rate"] > rates["a"]["rate"]
    assert rates["b"]["ci95"][0] <= rates["b"]["rate"] <= rates["b"]["ci95"][1]

    store = Store.open(None, state)
    try:
        (event,) = store.events("ab-2k/intro", kind="experiment_decided")
        decided_at = event.at
        assert event.data["winner"] == "b" and event.data["variants"]["a"]["sent"] >= 200
        enrollments = store.enrollments(sequence="ab-2k")
        actions = [a for e in enrollments for a in store.actions(enrollment_id=e.id)]
        step = ActionStep("intro", "send_inmail", variants=(Variant("a"), Variant("b")))
        leads = store.leads_by_ids(e.lead_id for e in enrollments)
        urls = {e.id: leads[e.lead_id].profile_url for e in enrollments}
        before = [a for a in actions if a.created_at < decided_at]
        after = [a for a in actions if a.created_at > decided_at]
        # before the decision, every lead got its own variant; after, only the winner
        assert before and all(a.variant == assign(step, "ab-2k", urls[a.enrollment_id]).name
                              for a in before)
        assert after and {a.variant for a in after} == {"b"}
    finally:
        store.close()
    # `status` and `plan` say it in words
    assert main(["status", "--state-dir", str(state), "--virtual-clock"]) == 0
    text = capsys.readouterr().out
    assert "b (promoted)" in text and "winner 'b' on reply rate" in text
    assert main(["plan", str(seq), "--sandbox", "--state-dir", str(state)]) == 0
    plan = capsys.readouterr().out
    assert "variants at 'intro' (a 50%, b 50%): winner 'b'" in plan and "promoted" in plan
    # `why` shows which variant a lead got
    lead = "https://www.linkedin.com/in/lead-ab-00000"
    assert main(["why", lead, "--state-dir", str(state), "-o", "json"]) == 0
    history = json.loads(capsys.readouterr().out)["history"]
    calls = [h for h in history if h["source"] == "action"]
    assert calls and calls[0]["detail"]["variant"] in ("a", "b")
    assert main(["why", lead, "--state-dir", str(state)]) == 0
    assert f"variant {calls[0]['detail']['variant']}" in capsys.readouterr().out


def test_each_lead_keeps_its_variant_after_a_new_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Revision 2 rewrites b's text: leads enrolled on either revision get the variant their
    hash gives, and the new text goes to the b leads of revision 2."""
    seq = _campaign(tmp_path, B_TEXT, leads=60)
    state = tmp_path / "state"
    assert main(["simulate", str(seq), "--scenario", str(tmp_path / "world.yaml"),
                 "--until", "+1h", "--keep", str(state)]) == 0
    new_text = "would a short call help?"
    seq.write_text(seq.read_text(encoding="utf-8").replace(B_TEXT, new_text), encoding="utf-8")
    with (tmp_path / "leads.csv").open("a", encoding="utf-8") as fh:  # join on revision 2
        for i in range(60, 90):
            fh.write(f"https://www.linkedin.com/in/lead-ab-{i:05d},Lead{i}\n")
    common = ["--sandbox", "--virtual-clock", "--state-dir", str(state)]
    assert main(["apply", str(seq), "--auto-approve", "--no-run", *common]) == 0
    assert main(["run", "--until", "+3d", *common]) == 0
    capsys.readouterr()
    store = Store.open(None, state)
    try:
        enrollments = store.enrollments(sequence="ab-2k")
        leads = store.leads_by_ids(e.lead_id for e in enrollments)
        current = store.get_sequence("ab-2k")
        assert current is not None and len({e.revision for e in enrollments}) == 2
        step = ActionStep("intro", "send_inmail", variants=(Variant("a"), Variant("b")))
        sent: Counter[tuple[bool, str]] = Counter()
        for e in enrollments:
            for a in store.actions(enrollment_id=e.id):
                assert a.variant == assign(step, "ab-2k", leads[e.lead_id].profile_url).name
                if a.status == "done":
                    revision_2 = a.revision == current.current_revision
                    assert (new_text in a.response["sent"]["text"]) == (
                        revision_2 and a.variant == "b")
                    sent[(revision_2, str(a.variant))] += 1
        assert set(sent) == {(False, "a"), (False, "b"), (True, "a"), (True, "b")}
    finally:
        store.close()
