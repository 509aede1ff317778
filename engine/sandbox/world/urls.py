"""Profile URLs as LinkedIn resolves them."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from engine.sandbox.world.model import WorldError

_HANDLE_RE = re.compile(r"^[A-Za-z0-9%_.\-~]+$")


def normalize_url(url: str) -> str:
    """``https://www.linkedin.com/in/<handle>`` for /in/, /pub/, /sales/people|lead/ URLs.

    Case, scheme, host variant, trailing slash, query and fragment are ignored. Raises
    ``WorldError("INVALID_INPUT")`` for anything that is not a LinkedIn profile URL.

    >>> normalize_url("http://linkedin.com/in/Ada-Lovelace/?utm=x")
    'https://www.linkedin.com/in/ada-lovelace'
    """
    raw = (url or "").strip()
    if "://" not in raw and raw.lower().startswith(("linkedin.com", "www.linkedin.com")):
        raw = "https://" + raw
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not (
        host == "linkedin.com" or host.endswith(".linkedin.com")
    ):
        raise WorldError("INVALID_INPUT", f"not a LinkedIn profile URL: {url!r}")
    segs = [s for s in unquote(parts.path).split("/") if s]
    handle: str | None = None
    if len(segs) >= 2 and segs[0].lower() in ("in", "pub"):
        handle = segs[1]
    elif len(segs) >= 3 and segs[0].lower() == "sales" and segs[1].lower() in ("people", "lead"):
        handle = segs[2].split(",")[0]
    if not handle or not _HANDLE_RE.match(handle):
        raise WorldError("INVALID_INPUT", f"not a LinkedIn profile URL: {url!r}")
    return f"https://www.linkedin.com/in/{handle.lower()}"
