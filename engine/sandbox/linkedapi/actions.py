"""What each LinkedAPI action does over the world and the data it answers (shapes of the
official SDK's types). A handler gets the resolved target (a person URL, a company, a post URL)
and returns ``(data, context for its children)``; a WorldError is the action's error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.sandbox.linkedapi import catalog
from engine.sandbox.linkedapi.catalog import Company
from engine.sandbox.linkedapi.filters import company_matches, person_matches, term_matches
from engine.sandbox.linkedapi.state import LinkedApiState
from engine.sandbox.world import Profile, World, iso, normalize_url, parse_iso

Node = Mapping[str, Any]
Result = tuple[Any, Any]
Handler = Callable[[World, LinkedApiState, str, Node, Any], Result]

SEARCH_LIMIT = 1000  # LinkedAPI: limit defaults to 10, at most 1000


def person_data(world: World, p: Profile) -> dict[str, Any]:
    company = catalog.company_of(world, p)
    return {
        "name": p.full_name,
        "publicUrl": p.url,
        "hashedUrl": f"https://www.linkedin.com/in/ACoAA{p.profile_id}",
        "headline": p.headline,
        "location": p.location,
        "countryCode": catalog.country(p.location).lower(),
        "position": p.job_title,
        "about": f"{p.job_title} at {p.company}." if p.company else None,
        "companyName": p.company,
        "companyHashedUrl": company.public_url if company else "",
        "followersCount": 100 + p.profile_id % 5000,
    }


def _nv_person(world: World, p: Profile) -> dict[str, Any]:
    company = catalog.company_of(world, p)
    return {"name": p.full_name, "publicUrl": p.url, "hashedUrl": _hashed(p),
            "headline": p.headline, "location": p.location,
            "countryCode": catalog.country(p.location).lower(), "position": p.job_title,
            "companyName": p.company, "companyHashedUrl": company.hashed_url if company else ""}


def _hashed(p: Profile) -> str:
    return f"https://www.linkedin.com/sales/lead/{p.sales_navigator_profile_id}"


def _brief(p: Profile) -> dict[str, Any]:
    return {"name": p.full_name, "publicUrl": p.url, "headline": p.headline,
            "location": p.location}


# ---- people ------------------------------------------------------------------------------


def _open_person(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    p = world.visit(acct, url)
    return (person_data(world, p) if node.get("basicInfo", True) else {}), p.url


def _check_status(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    rel = world.relationship(acct, url)
    return {"connectionStatus": {"none": "notConnected"}.get(rel, rel)}, url


def _connect(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    note = node.get("note")
    world.connect(acct, url, note=str(note) if note else None)
    return None, url


def _withdraw(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.withdraw(acct, url)
    return None, url


def _remove(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.remove_connection(acct, url)
    return None, url


def _message(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.message(acct, url, str(node["text"]))
    st.synced.add((world.identity(acct).uid, normalize_url(url)))
    return None, url


def _sync(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.relationship(acct, url)  # auth + access checks
    st.synced.add((world.identity(acct).uid, normalize_url(url)))
    return None, url


def _nv_open_person(world: World, st: LinkedApiState, acct: str, node: Node, url: Any
                    ) -> Result:
    world.relationship(acct, url)  # auth + access checks
    world.count_action(acct, "nv_visit")
    p = world.profile(url)
    return (_nv_person(world, p) if node.get("basicInfo", True) else {}), p.url


def _nv_message(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.inmail(acct, url, str(node.get("subject", "")), str(node["text"]))
    st.synced.add((world.identity(acct).uid, normalize_url(url)))
    return None, url


def _person_child(fn: Callable[[World, Profile], Any]) -> Handler:
    def handler(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
        return fn(world, world.profile(url)), None

    return handler


def _person_posts(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    return catalog.by_time(catalog.person_posts(world, world.profile(url)), node), None


def _others_posts(world: World, p: Profile) -> list[dict[str, Any]]:
    """Posts of other people this person engaged with (their comments and reactions)."""
    out: list[dict[str, Any]] = []
    for other in catalog.engagers(world, p.url):
        if other.url != p.url:
            out.extend(catalog.person_posts(world, other)[:1])
    return out


def _person_comments(world: World, st: LinkedApiState, acct: str, node: Node, url: Any
                     ) -> Result:
    p = world.profile(url)
    items = [{"postUrl": post["url"], "time": post["time"], "text": "Well said.",
              "image": None, "reactionsCount": 2} for post in _others_posts(world, p)]
    return catalog.by_time(items, node), None


def _person_reactions(world: World, st: LinkedApiState, acct: str, node: Node, url: Any
                      ) -> Result:
    p = world.profile(url)
    items = [{"postUrl": post["url"], "time": post["time"], "reactionType": "like"}
             for post in _others_posts(world, p)]
    return catalog.by_time(items, node), None


# ---- lists and searches ------------------------------------------------------------------


def _limit(node: Node, default: int) -> int:
    return min(int(node.get("limit") or default), SEARCH_LIMIT)


def _term(node: Node) -> str:
    """``term``, else the ``keywords`` of a ``customSearchUrl``."""
    if node.get("term"):
        return str(node["term"])
    query = parse_qs(urlsplit(str(node.get("customSearchUrl") or "")).query)
    return " ".join(query.get("keywords", []))


def _connections(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any) -> Result:
    items = world.connections_of(acct)
    if node.get("since"):
        cutoff = parse_iso(str(node["since"]))
        items = [(p, at) for p, at in items if at >= cutoff]
    flt = node.get("filter") or {}
    items = [(p, at) for p, at in items if person_matches(world, p, flt)]
    items = items[: int(node.get("limit") or len(items) or 1)]
    return ([{**_brief(p), "connectedAt": iso(at)} for p, at in items],
            [p.url for p, _ in items])


def _pending(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any) -> Result:
    out = []
    for inv in world.pending_invitations(acct):
        p = world.profile(inv.profile_url)
        out.append({"name": p.full_name, "publicUrl": p.url, "headline": p.headline,
                    "sentTime": iso(inv.sent_at)})
    return out, None


def _people(world: World, acct: str, node: Node) -> list[Profile]:
    found = world.search_people(_term(node), len(world.profiles) + 1, identity=acct)
    flt = node.get("filter") or {}
    return [p for p in found if person_matches(world, p, flt)][: _limit(node, 10)]


def _search_people(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any
                   ) -> Result:
    found = _people(world, acct, node)
    return [_brief(p) for p in found], [p.url for p in found]


def _nv_search_people(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any
                      ) -> Result:
    found = _people(world, acct, node)
    return ([{"name": p.full_name, "hashedUrl": _hashed(p), "position": p.job_title,
              "location": p.location} for p in found], [p.url for p in found])


def _companies(world: World, acct: str, node: Node) -> list[Company]:
    world.count_action(acct, "search")
    term, flt = _term(node), node.get("filter") or {}
    out = [c for c in catalog.companies(world)
           if term_matches(f"{c.name} {catalog.industry(world, c.name)}", term)
           and company_matches(world, c, flt)]
    return out[: _limit(node, 10)]


def _search_companies(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any
                      ) -> Result:
    found = _companies(world, acct, node)
    return ([{k: catalog.company_data(world, c)[k]
              for k in ("name", "publicUrl", "industry", "location")} for c in found], found)


def _nv_search_companies(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any
                         ) -> Result:
    found = _companies(world, acct, node)
    out = []
    for c in found:
        data = catalog.company_data(world, c)
        out.append({"name": c.name, "hashedUrl": c.hashed_url, "industry": data["industry"],
                    "employeesCount": data["employeesCount"]})
    return out, found


# ---- companies ---------------------------------------------------------------------------


def _open_company(nv: bool) -> Handler:
    def handler(world: World, st: LinkedApiState, acct: str, node: Node, c: Any) -> Result:
        world.count_action(acct, "nv_company_visit" if nv else "company_visit")
        data = catalog.company_data(world, c, nv=nv) if node.get("basicInfo", True) else {}
        return data, c

    return handler


def _staff(world: World, c: Company, node: Node, *, dms: bool) -> list[Profile]:
    flt = node.get("filter") or {}
    out = [p for p in catalog.employees(world, c) if person_matches(world, p, flt)
           and (not dms or p.job_title in catalog.DECISION_MAKERS)]
    return out[: _limit(node, 10)]


def _employees(nv: bool, dms: bool) -> Handler:
    def handler(world: World, st: LinkedApiState, acct: str, node: Node, c: Any) -> Result:
        out = []
        for p in _staff(world, c, node, dms=dms):
            item = ({"name": p.full_name, "hashedUrl": _hashed(p), "position": p.job_title,
                     "location": p.location} if nv else _brief(p))
            if dms:
                item["countryCode"] = catalog.country(p.location).lower()
            out.append(item)
        return out, None

    return handler


def _company_posts(world: World, st: LinkedApiState, acct: str, node: Node, c: Any) -> Result:
    return catalog.by_time(catalog.company_posts(world, c), node), None


# ---- posts -------------------------------------------------------------------------------


def find_post(world: World, st: LinkedApiState, url: str) -> dict[str, Any]:
    activity = catalog.activity_of(url)
    created = st.posts.get(catalog.POST_URL.format(activity)) if activity else None
    if created is not None:  # engaged with by the identities only
        post = catalog.post_data(world, activity or 0, author=created["account"],
                                 text=created["text"], at=parse_iso(created["time"]))
        post.update(reactionsCount=len(_own(st, post["url"], "react")),
                    commentsCount=len(_own(st, post["url"], "comment")), repostsCount=0)
        return post
    return catalog.derived_post(world, url)


def _derived_engagers(world: World, st: LinkedApiState, post_url: str) -> list[Profile]:
    """The people the post's counts were drawn for (none on an identity's own post)."""
    return [] if post_url in st.posts else catalog.engagers(
        world, str(catalog.activity_of(post_url)))


def _own(st: LinkedApiState, post_url: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in st.engagements if e["postUrl"] == post_url and e["kind"] == kind]


def _open_post(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
    world.count_action(acct, "post_visit")
    post = find_post(world, st, url)
    return (post if node.get("basicInfo", True) else {}), post["url"]


def _engager(world: World, uid: str) -> Profile:
    ident = world.identity(uid)
    return Profile(url=ident.profile_url, handle="", profile_id=ident.profile_id,
                   sales_navigator_profile_id="", first_name=ident.name, last_name="",
                   full_name=ident.name, company="", headline="")


def _post_comments(world: World, st: LinkedApiState, acct: str, node: Node, url: Any
                   ) -> Result:
    post = find_post(world, st, url)
    people = [(p, "Interesting read.", post["time"])
              for p in _derived_engagers(world, st, post["url"])]
    people += [(_engager(world, e["account"]), e["text"], e["time"])
               for e in _own(st, post["url"], "comment")]
    items = [{"commenterUrl": p.url, "commenterName": p.full_name,
              "commenterHeadline": p.headline, "commenterType": "person", "time": at,
              "text": text, "image": None, "isReply": False, "reactionsCount": 1,
              "repliesCount": 0} for p, text, at in people]
    return items[: _limit(node, 10)], None


def _post_reactions(world: World, st: LinkedApiState, acct: str, node: Node, url: Any
                    ) -> Result:
    post = find_post(world, st, url)
    people = [(p, "like") for p in _derived_engagers(world, st, post["url"])]
    people += [(_engager(world, e["account"]), e["type"]) for e in _own(st, post["url"], "react")]
    items = [{"engagerUrl": p.url, "engagerName": p.full_name, "engagerHeadline": p.headline,
              "engagerType": "person", "type": kind} for p, kind in people]
    return items[: _limit(node, 10)], None


def _engage(kind: str) -> Handler:
    def handler(world: World, st: LinkedApiState, acct: str, node: Node, url: Any) -> Result:
        post = find_post(world, st, url)
        ident = world.count_action(acct, kind)
        entry = {"account": ident.uid, "kind": kind, "postUrl": post["url"],
                 "time": iso(world.now)}
        entry.update({"type": node["type"]} if kind == "react" else {"text": node["text"]})
        st.engagements.append(entry)
        st.dirty = True
        return None, None

    return handler


def _create_post(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any) -> Result:
    ident = world.count_action(acct, "post")
    activity = catalog.PERSON_POSTS + ident.profile_id * 100 + 50 + len(
        [u for u, p in st.posts.items() if p["account"] == ident.uid])
    url = catalog.POST_URL.format(activity)
    st.posts[url] = {"account": ident.uid, "text": str(node["text"]), "time": iso(world.now)}
    st.dirty = True
    return {"postUrl": url}, None


# ---- statistics --------------------------------------------------------------------------


def _ssi(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any) -> Result:
    ident = world.count_action(acct, "stats")
    n = catalog.draw(world, "ssi", ident.uid)
    return {"ssi": 40 + n % 50, "industryTop": 1 + n % 30, "networkTop": 1 + n % 25}, None


def _performance(world: World, st: LinkedApiState, acct: str, node: Node, ctx: Any) -> Result:
    ident = world.count_action(acct, "stats")
    n = catalog.draw(world, "perf", ident.uid)
    views = sum(1 for d in world.delivered if d.identity == ident.uid and d.kind == "visit")
    return {"followersCount": 200 + len(world.network.get(ident.uid, {})) + n % 300,
            "postViewsLast7Days": n % 900, "profileViewsLast90Days": views + n % 200,
            "searchAppearancesPreviousWeek": n % 120}, None


HANDLERS: Mapping[str, Handler] = {
    "st.openPersonPage": _open_person,
    "st.checkConnectionStatus": _check_status,
    "st.sendConnectionRequest": _connect,
    "st.withdrawConnectionRequest": _withdraw,
    "st.removeConnection": _remove,
    "st.sendMessage": _message,
    "st.syncConversation": _sync,
    "st.retrievePersonExperience": _person_child(catalog.experiences),
    "st.retrievePersonEducation": _person_child(catalog.education),
    "st.retrievePersonSkills": _person_child(
        lambda w, p: [{"name": s} for s in catalog.skills(w, p.url, 4)]),
    "st.retrievePersonLanguages": _person_child(catalog.languages),
    "st.retrievePersonPosts": _person_posts,
    "st.retrievePersonComments": _person_comments,
    "st.retrievePersonReactions": _person_reactions,
    "st.retrieveConnections": _connections,
    "st.retrievePendingRequests": _pending,
    "st.searchPeople": _search_people,
    "st.searchCompanies": _search_companies,
    "st.openCompanyPage": _open_company(nv=False),
    "st.retrieveCompanyEmployees": _employees(nv=False, dms=False),
    "st.retrieveCompanyDMs": _employees(nv=False, dms=True),
    "st.retrieveCompanyPosts": _company_posts,
    "st.openPost": _open_post,
    "st.retrievePostComments": _post_comments,
    "st.retrievePostReactions": _post_reactions,
    "st.reactToPost": _engage("react"),
    "st.commentOnPost": _engage("comment"),
    "st.createPost": _create_post,
    "st.retrieveSSI": _ssi,
    "st.retrievePerformance": _performance,
    "nv.openPersonPage": _nv_open_person,
    "nv.sendMessage": _nv_message,
    "nv.syncConversation": _sync,
    "nv.searchPeople": _nv_search_people,
    "nv.searchCompanies": _nv_search_companies,
    "nv.openCompanyPage": _open_company(nv=True),
    "nv.retrieveCompanyEmployees": _employees(nv=True, dms=False),
    "nv.retrieveCompanyDMs": _employees(nv=True, dms=True),
}

#: the actions that only run their children for each person or company (execute.py)
ITERATORS = frozenset({"st.doForPeople", "st.doForCompanies"})
