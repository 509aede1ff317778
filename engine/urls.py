"""The one LinkedIn profile-URL normalizer: the engine, the providers and the sandbox all key
leads by its output.

>>> normalize_profile_url("http://LinkedIn.com/in/Jane-Doe/?trk=x#top")
'https://www.linkedin.com/in/jane-doe'
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

_HOST = re.compile(r"^(?:[a-z]{2,3}\.|www\.|m\.)?linkedin\.com$")
# Sales Navigator ids are case-sensitive (ACwAA...); vanity handles are not.
_SALES_ID = re.compile(r"^[A-Za-z0-9_-]{8,}$")
_BAD_HANDLE = re.compile(r"[\s/\\?#<>\"'\x00-\x1f\x7f]")
# A dot segment (also percent-encoded) would walk up the path of any URL built from it.
_DOT_SEGMENTS = frozenset({".", ".."})
# The common forms of a vanity URL whose handle needs no decoding or quoting (no `%`, first
# character not a dot): their canonical form is the lower-cased handle. A leads import
# normalizes a million URLs, each seen once, where urlsplit costs most.
_PLAIN = re.compile(
    r"(?:https?://)?(?:www\.)?linkedin\.com/in/([A-Za-z0-9_~-][A-Za-z0-9._~-]*)/?(?:[?#]\S*)?"
)


def normalize_profile_url(url: str) -> str:
    """The canonical form of a LinkedIn profile URL (see :func:`_normalize`); the answers for
    URLs of ordinary length are kept (a runner sees the same few thousand URLs in every
    provider answer, every tick)."""
    plain = _PLAIN.fullmatch(url)
    if plain is not None:
        return "https://www.linkedin.com/in/" + plain.group(1).lower()
    if len(url) <= 300:
        return _normalize_cached(url)
    return _normalize(url)


def _normalize(url: str) -> str:
    """The canonical form of a LinkedIn profile URL; raises ``ValueError`` if it is not one.

    - ``/in/<handle>`` (lower-cased, extra path segments dropped),
    - ``/pub/<name>/<a>/<b>/<c>`` (lower-cased),
    - ``/sales/people/<id>`` and ``/sales/lead/<id>,NAME_SEARCH,..`` -> ``/sales/people/<id>``
      (the id keeps its case),

    always ``https://www.linkedin.com``, no trailing slash, no query string, no fragment; a
    handle of ``.`` or ``..`` (even percent-encoded) or with control characters is refused.
    Idempotent: ``normalize_profile_url(normalize_profile_url(u)) == normalize_profile_url(u)``.
    """
    text = url.strip()
    if not text:
        raise ValueError("empty profile URL")
    if "://" not in text:
        text = "https://" + text.lstrip("/")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").lower()
    if not _HOST.match(host):
        raise ValueError(f"not a linkedin.com URL: {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[0].lower() == "in":
        handle = _handle(segments[1], url)
        return f"https://www.linkedin.com/in/{handle}"
    if len(segments) >= 2 and segments[0].lower() == "pub":
        pub = [_handle(s, url) for s in segments[1:5]]
        return "https://www.linkedin.com/pub/" + "/".join(pub)
    if len(segments) >= 3 and segments[0].lower() == "sales" and segments[1].lower() in (
        "people",
        "lead",
    ):
        sales_id = unquote(segments[2]).split(",", 1)[0]
        if not _SALES_ID.match(sales_id):
            raise ValueError(f"malformed Sales Navigator profile id in {url!r}")
        return f"https://www.linkedin.com/sales/people/{sales_id}"
    raise ValueError(f"not a profile URL (/in/, /pub/ or /sales/people|lead/): {url!r}")


_normalize_cached = lru_cache(maxsize=1 << 16)(_normalize)


def _handle(raw: str, url: str) -> str:
    decoded = unquote(raw).strip().lower()
    if not decoded or decoded in _DOT_SEGMENTS or _BAD_HANDLE.search(decoded):
        raise ValueError(f"malformed profile handle in {url!r}")
    return quote(decoded, safe="-_.~")


def profile_handle(url: str) -> str:
    """The last path segment of a normalized profile URL (vanity handle or Sales Navigator id)."""
    return unquote(normalize_profile_url(url).rsplit("/", 1)[1])
