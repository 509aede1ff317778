from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import LeadsError
from engine.manifest.leads import read_lead_chunks, read_leads
from engine.urls import normalize_profile_url, profile_handle


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.linkedin.com/in/jane-doe", "https://www.linkedin.com/in/jane-doe"),
        ("http://linkedin.com/in/Jane-Doe/", "https://www.linkedin.com/in/jane-doe"),
        ("linkedin.com/in/jane-doe?trk=abc#x", "https://www.linkedin.com/in/jane-doe"),
        ("https://fr.linkedin.com/in/jane-doe/details/experience/",
         "https://www.linkedin.com/in/jane-doe"),
        ("  HTTPS://WWW.LINKEDIN.COM/IN/JANE-DOE  ", "https://www.linkedin.com/in/jane-doe"),
        ("https://www.linkedin.com/in/jos%C3%A9", "https://www.linkedin.com/in/jos%C3%A9"),
        ("https://www.linkedin.com/in/JOS%C3%89", "https://www.linkedin.com/in/jos%C3%A9"),
        ("https://www.linkedin.com/pub/John-Doe/12/345/678/",
         "https://www.linkedin.com/pub/john-doe/12/345/678"),
        ("https://www.linkedin.com/sales/lead/ACwAAAbCdEf123,NAME_SEARCH,x1y2",
         "https://www.linkedin.com/sales/people/ACwAAAbCdEf123"),
        ("https://www.linkedin.com/sales/people/ACwAAAbCdEf123/",
         "https://www.linkedin.com/sales/people/ACwAAAbCdEf123"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_profile_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "https://example.com/in/x", "https://www.linkedin.com/company/acme",
     "https://www.linkedin.com/in/", "ftp://linkedin.com/in/x", "not a url",
     "https://www.linkedin.com/sales/lead/x,NAME"],
)
def test_normalize_refuses(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_profile_url(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "linkedin.com/in/..",
        "https://www.linkedin.com/in/../",
        "https://www.linkedin.com/in/%2e%2e",
        "https://www.linkedin.com/in/%2E%2E/x",
        "https://www.linkedin.com/in/.",
        "https://www.linkedin.com/in/%2e",
        "https://www.linkedin.com/pub/../12/345/678",
        "https://www.linkedin.com/pub/john/%2e%2e/345/678",
        "https://www.linkedin.com/in/a%00b",
    ],
)
def test_dot_segments_are_not_profile_handles(raw: str) -> None:
    with pytest.raises(ValueError, match="malformed profile handle"):
        normalize_profile_url(raw)


def test_profile_handle() -> None:
    assert profile_handle("linkedin.com/in/Jane-Doe/") == "jane-doe"


_handles = st.text(
    alphabet=st.characters(
        min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="/\\?#<>\"'%"
    ),
    min_size=1, max_size=30,
)


@given(
    handle=_handles,
    scheme=st.sampled_from(["http://", "https://", ""]),
    host=st.sampled_from(
        ["linkedin.com", "www.linkedin.com", "WWW.LinkedIn.com", "de.linkedin.com"]
    ),
    kind=st.sampled_from(["in", "IN", "pub"]),
    tail=st.sampled_from(["", "/", "/?trk=1", "#frag", "/details/"]),
)
def test_normalization_idempotent(
    handle: str, scheme: str, host: str, kind: str, tail: str
) -> None:
    raw = f"{scheme}{host}/{kind}/{handle}{tail}"
    try:
        once = normalize_profile_url(raw)
    except ValueError:
        return
    assert normalize_profile_url(once) == once
    assert once.startswith("https://www.linkedin.com/")
    assert "?" not in once and "#" not in once and not once.endswith("/")


def _write(tmp_path: Path, text: str | bytes, name: str = "leads.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_read_leads_reports_bad_rows(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "linkedin_profile_url,full_name,timezone\n"
        "https://www.linkedin.com/in/ana,Ana,Europe/Paris\n"
        ",Nobody,\n"
        "https://example.com/in/x,Wrong host,\n"
        "linkedin.com/in/ANA/,Ana again,\n"
        "https://www.linkedin.com/in/bob,Bob,Mars/Olympus\n"
        "\n"
        "https://www.linkedin.com/in/carl?x=1,Carl,\n",
    )
    result = read_leads(p)
    assert [r["linkedin_profile_url"] for r in result.rows] == [
        "https://www.linkedin.com/in/ana",
        "https://www.linkedin.com/in/carl",
    ]
    assert result.rows[0] == {
        "linkedin_profile_url": "https://www.linkedin.com/in/ana",
        "full_name": "Ana",
        "timezone": "Europe/Paris",
    }
    assert result.taken == 2 and result.refused_count == 4
    assert [(pr.line, pr.path) for pr in result.refused] == [
        (3, "linkedin_profile_url"),
        (4, "linkedin_profile_url"),
        (5, "linkedin_profile_url"),
        (6, "timezone"),
    ]
    assert str(result.refused[2]).startswith(f"{p}:5:1:")
    assert "duplicate of line 2" in result.refused[2].message


def test_multiline_record_keeps_line_numbers(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        'linkedin_profile_url,note\nlinkedin.com/in/a,"two\nlines"\n,missing\n',
    )
    result = read_leads(p)
    assert result.taken == 1
    assert result.refused[0].line == 4


def test_bom_and_header_whitespace(tmp_path: Path) -> None:
    p = _write(tmp_path, "\ufeff linkedin_profile_url , full_name\nlinkedin.com/in/a,A\n")
    assert read_leads(p).rows == [{"linkedin_profile_url": "https://www.linkedin.com/in/a",
                                   "full_name": "A"}]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty leads file"),
        (b"full_name\nAna\n", "no 'linkedin_profile_url' column"),
        (b"linkedin_profile_url\n\xff\xfe bad\n", "not UTF-8"),
    ],
)
def test_unreadable_files_raise(tmp_path: Path, content: bytes, needle: str) -> None:
    with pytest.raises(LeadsError, match=needle):
        read_leads(_write(tmp_path, content))


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(LeadsError, match="cannot read"):
        read_leads(tmp_path / "nope.csv")


def test_unclosed_quote_is_refused_at_the_line_it_opened(tmp_path: Path) -> None:
    # Python's csv takes an unclosed quote at end of file: the rest of the file would become
    # one cell (and be sent inside a note).
    p = _write(
        tmp_path,
        "linkedin_profile_url,full_name,note\n"
        "linkedin.com/in/ana,Ana,fine\n"
        'linkedin.com/in/bob,Bob,"I follow what Bobco\n'
        "linkedin.com/in/cy,Cy,hello\n"
        "linkedin.com/in/di,Di,hi\n",
    )
    with pytest.raises(LeadsError, match=rf"^{re.escape(str(p))}:3: unclosed quote"):
        read_leads(p)


def test_unclosed_quote_in_the_header_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, 'linkedin_profile_url,"note\nlinkedin.com/in/ana,x\n')
    with pytest.raises(LeadsError, match=rf"^{re.escape(str(p))}:1: unclosed quote"):
        read_leads(p)


def test_closed_quotes_spanning_lines_are_fine(tmp_path: Path) -> None:
    p = _write(tmp_path, 'linkedin_profile_url,note\nlinkedin.com/in/a,"x ""y""\nz"\n')
    assert read_leads(p).rows[0]["note"] == 'x "y"\nz'


@pytest.mark.parametrize(
    "brk", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]
)
def test_unicode_line_breaks_stay_inside_cells(tmp_path: Path, brk: str) -> None:
    # Only \n (and \r\n) end a row, as in an editor; the line numbers are the editor's.
    p = _write(
        tmp_path,
        "linkedin_profile_url,first_name,last_name\n"
        f"linkedin.com/in/jo,Jo{brk}anna,Doe\n"
        f"linkedin.com/in/x{brk}y,X,Y\n"
        ",missing,\n",
    )
    result = read_leads(p)
    assert [r["first_name"] for r in result.rows] == [f"Jo{brk}anna"]
    assert [(pr.line, pr.path) for pr in result.refused] == [
        (3, "linkedin_profile_url"),
        (4, "linkedin_profile_url"),
    ]


def test_a_lone_carriage_return_does_not_end_a_row(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "linkedin_profile_url,first_name\r\n"
        "linkedin.com/in/jo,Jo\rlinkedin.com/in/evil\r\n"
        'linkedin.com/in/ann,"A\rnn"\r\n'
        ",missing\n",
    )
    result = read_leads(p)
    assert [r["first_name"] for r in result.rows] == ["A\rnn"]
    assert [pr.line for pr in result.refused] == [2, 4]
    assert "carriage return" in result.refused[0].message


@pytest.mark.parametrize(
    "tz", ["Europe", "America", "../x", "x" * 300, "/etc/passwd", "Europe/", "zone.tab"]
)
def test_impossible_timezone_keys_are_unknown_timezones(tmp_path: Path, tz: str) -> None:
    p = _write(
        tmp_path,
        f"linkedin_profile_url,timezone\nlinkedin.com/in/a,{tz}\nlinkedin.com/in/b,UTC\n",
    )
    result = read_leads(p)
    assert [r["timezone"] for r in result.rows] == ["UTC"]
    (problem,) = result.refused
    assert (problem.line, problem.path) == (2, "timezone")
    assert problem.message.startswith("unknown IANA timezone")


def test_an_excel_semicolon_export_is_read_by_its_delimiter(tmp_path: Path) -> None:
    """Excel in a comma-decimal locale saves "CSV" with semicolons; the header says so."""
    path = tmp_path / "export.csv"
    path.write_text(
        "first_name;linkedin_profile_url;company_name\n"
        "Ada;https://www.linkedin.com/in/ada;Analytical; Engines\n"
        'Grace;"https://www.linkedin.com/in/grace";"Navy; Reserve"\n',
        encoding="utf-8",
    )
    result = read_leads(path)
    assert [r["first_name"] for r in result.rows] == ["Grace"]
    assert result.rows[0]["company_name"] == "Navy; Reserve"
    assert [str(p) for p in result.refused] == [f"{path}:2:1: $: 4 fields, header has 3"]


def test_a_header_without_the_url_column_names_the_delimiters(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("first_name;profile\nAda;x\n", encoding="utf-8")
    with pytest.raises(LeadsError, match="separated by a comma, a semicolon, a tab or a pipe"):
        read_leads(path)


# ---- a file read in batches of lines (READ_BYTES): nothing changes at a batch's edge ----------

def _big_prefix(rows: int) -> str:
    """A header and ``rows`` good rows: well past one read batch."""
    return "linkedin_profile_url,note\n" + "".join(
        f"linkedin.com/in/lead-{i:06d},hello\n" for i in range(rows))


def test_a_file_of_many_batches_keeps_every_row_and_line(tmp_path: Path) -> None:
    from engine.manifest.leads import READ_BYTES

    rows = 3 * READ_BYTES // 30
    text = _big_prefix(rows) + 'linkedin.com/in/last,"two\nlines"\n,missing\n'
    result = read_leads(_write(tmp_path, text))
    assert result.taken == rows + 1
    assert result.lines[-1] == rows + 2 and result.rows[-1]["note"] == "two\nlines"
    assert [p.line for p in result.refused] == [rows + 4]


def test_an_unclosed_quote_across_batches_names_its_line(tmp_path: Path) -> None:
    from engine.manifest.leads import READ_BYTES

    rows = READ_BYTES // 30  # the quote opens in the second batch, the file ends in the third
    # the rest of the file stays under csv.field_size_limit, past which it is refused as a row
    text = _big_prefix(rows) + 'linkedin.com/in/x,"open\n' + _big_prefix(rows)[26:]
    p = _write(tmp_path, text)
    with pytest.raises(LeadsError, match=rf"^{re.escape(str(p))}:{rows + 2}: unclosed quote"):
        read_leads(p)


def test_a_bad_byte_in_a_later_batch_is_named_by_its_file_offset(tmp_path: Path) -> None:
    from engine.manifest.leads import READ_BYTES

    head = _big_prefix(2 * READ_BYTES // 30).encode()
    p = _write(tmp_path, head + b"linkedin.com/in/\xff\n")
    with pytest.raises(LeadsError, match=rf"not UTF-8 \(byte {len(head) + 16}\)"):
        read_leads(p)


def test_a_duplicate_names_the_first_line_across_chunks(tmp_path: Path) -> None:
    """The lines of earlier chunks are kept compactly (engine.manifest.leads._Firsts): a
    duplicate still names the first row's line, in its own chunk or any earlier one."""
    path = tmp_path / "leads.csv"
    urls = [f"https://www.linkedin.com/in/p{i}" for i in range(7)]
    path.write_text("linkedin_profile_url\n" + "\n".join(
        [*urls, urls[5], urls[0], urls[6]]) + "\n")
    chunks = list(read_lead_chunks(path, size=3))
    assert [len(c.rows) for c in chunks] == [3, 3, 1]
    refused = [p.message for c in chunks for p in c.refused]
    assert refused == [f"duplicate of line 7 ({urls[5]})", f"duplicate of line 2 ({urls[0]})",
                       f"duplicate of line 8 ({urls[6]})"]
