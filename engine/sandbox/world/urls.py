"""Profile URLs as LinkedIn resolves them: the engine's normalizer, then LinkedIn's own routing.

``engine.urls.normalize_profile_url`` decides what a profile URL is and its canonical form. On
top of it the sandbox models how LinkedIn serves profiles: every member is keyed by its ``/in/``
address, a legacy ``/pub/<name>/..`` URL is the member ``<name>``, and a Sales Navigator URL is
the member whose id it carries (the world looks that id up; an unknown one becomes a handle).
"""

from __future__ import annotations

import re

from engine.sandbox.world.model import WorldError
from engine.urls import normalize_profile_url

_ORIGIN = "https://www.linkedin.com/"
# A Sales Navigator path the engine refuses for the shape of its id (it wants 8 characters or
# more of [A-Za-z0-9_-], a lead file's check); LinkedIn resolves any id it issued, and the
# sandbox's short test ids (ACwAA1) must reach a profile.
_SALES_PATH = re.compile(r"/sales/(?:people|lead)/([^/?#,]+)", re.IGNORECASE)


def normalize_url(url: str) -> str:
    """``https://www.linkedin.com/in/<handle>`` for /in/, /pub/, /sales/people|lead/ URLs.

    Case, scheme, host variant, trailing slash, query and fragment are ignored. Raises
    ``WorldError("INVALID_INPUT")`` for anything that is not a LinkedIn profile URL.

    >>> normalize_url("http://linkedin.com/in/Ada-Lovelace/?utm=x")
    'https://www.linkedin.com/in/ada-lovelace'
    """
    try:
        norm = normalize_profile_url(url)
    except ValueError as exc:
        norm = _as_member_url(url, exc)
    kind, _, rest = norm.removeprefix(_ORIGIN).partition("/")
    if kind == "in":
        return norm
    if kind == "pub":
        return f"{_ORIGIN}in/{rest.split('/', 1)[0]}"
    return f"{_ORIGIN}in/{rest.rsplit('/', 1)[-1].lower()}"  # sales/people/<id>


def _as_member_url(url: str, refused: ValueError) -> str:
    """A Sales Navigator URL the engine refused for its id, read as the member URL of that id
    (so the engine still checks scheme, host and characters); anything else is invalid."""
    found = _SALES_PATH.search(url)
    if found is not None:
        try:
            return normalize_profile_url(f"{url[:found.start()]}/in/{found.group(1)}")
        except ValueError:
            pass
    raise WorldError("INVALID_INPUT", f"not a LinkedIn profile URL: {url!r}") from refused
