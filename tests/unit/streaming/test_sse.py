"""The event-stream parser, against the WHATWG examples and a plain reference parser."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.streaming.sse import (
    Comment,
    Event,
    EventTooLarge,
    IncompleteEvent,
    Item,
    SSEParser,
    iter_events,
)

# --------------------------------------------------------------------------- helpers


@dataclass
class Outcome:
    """Everything a stream produced: items, then how it ended."""

    items: list[Item] = field(default_factory=list)
    end: bool | str = False  # finish()'s answer, or "too large"
    last_event_id: str = ""
    retry: int | None = None


def run(chunks: Iterable[bytes], max_event_size: int = 1 << 20) -> Outcome:
    parser = SSEParser(max_event_size)
    out = Outcome()
    try:
        for chunk in chunks:
            out.items += parser.feed(chunk)
    except EventTooLarge as exc:
        out.items += exc.events
        out.end = "too large"
        return out
    out.end = parser.finish()
    out.last_event_id, out.retry = parser.last_event_id, parser.retry
    return out


def parse(raw: bytes) -> list[Item]:
    return run([raw]).items


def ev(data: str, type: str = "message", id: str = "", retry: int | None = None) -> Event:
    return Event(type=type, data=data, id=id, retry=retry)


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def reference(raw: bytes, limit: int | None = None) -> Outcome:
    """The standard's algorithm read literally, one character at a time, on the whole input."""
    text = raw.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    out = Outcome()
    data = event_type = id_buffer = ""
    in_event = False
    pos = 0
    while True:
        end = pos
        while end < len(text) and text[end] not in "\r\n":
            end += 1
        line = text[pos:end]
        if limit is not None and len(line.encode()) + len(data.encode()) > limit:
            out.end = "too large"
            return out
        if end == len(text):
            break
        pos = end + (2 if text[end : end + 2] == "\r\n" else 1)
        if line == "":
            out.last_event_id = id_buffer
            if data:
                data = data.removesuffix("\n")
                out.items.append(Event(event_type or "message", data, id_buffer, out.retry))
            data = event_type = ""
            in_event = False
            continue
        if line[0] == ":":
            out.items.append(Comment(line[1:]))
            continue
        in_event = True
        if ":" in line:
            name = line[: line.index(":")]
            value = line[line.index(":") + 1 :]
            if value[:1] == " ":
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            out.retry = int(value)
    out.end = in_event or (line != "" and line[0] != ":")
    return out


# --------------------------------------------------------------------------- spec examples


def test_multiline_data_joined_with_newlines() -> None:
    assert parse(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [ev("YHOO\n+2\n10")]


def test_spec_example_with_comment_ids_and_unterminated_event() -> None:
    raw = b": test stream\n\ndata: first event\nid: 1\n\n"
    raw += b"data:second event\nid\n\ndata:  third event\n"
    out = run([raw])
    assert out.items == [
        Comment(" test stream"),
        ev("first event", id="1"),
        ev("second event", id=""),
    ]
    assert out.end is True  # " third event" never saw its blank line


def test_spec_example_data_without_colon() -> None:
    out = run([b"data\n\ndata\ndata\n\ndata:"])
    assert out.items == [ev(""), ev("\n")]
    assert out.end is True


def test_spec_example_one_space_removed() -> None:
    assert parse(b"data:test\n\ndata: test\n\ndata:  test\n\n") == [
        ev("test"),
        ev("test"),
        ev(" test"),
    ]


def test_type_defaults_to_message_and_resets_after_dispatch() -> None:
    raw = b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert parse(raw) == [ev("1", type="add"), ev("2"), ev("3")]


def test_block_without_data_dispatches_nothing_and_resets_type() -> None:
    assert parse(b"event: add\n\ndata: x\n\n") == [ev("x")]


def test_unknown_and_wrongly_cased_fields_are_ignored() -> None:
    assert parse(b"Data: no\nfoo: bar\ndatax: no\ndata: yes\n\n") == [ev("yes")]


def test_field_name_ends_at_first_colon() -> None:
    assert parse(b"data: a:b: c\n\n") == [ev("a:b: c")]


# --------------------------------------------------------------------------- id and retry


def test_id_persists_across_events_and_empty_id_resets_it() -> None:
    raw = b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"
    assert parse(raw) == [ev("a", id="7"), ev("b", id="7"), ev("c", id="")]


def test_id_containing_nul_is_ignored() -> None:
    assert parse(b"id: 1\n\nid: 2\x003\ndata: x\n\n") == [ev("x", id="1")]


def test_blank_line_commits_id_without_an_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 42\n") == []
    assert parser.last_event_id == ""  # not committed until the blank line
    assert parser.feed(b"\n") == []
    assert parser.last_event_id == "42"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3000", 3000),
        ("0", 0),
        ("007", 7),
        ("", None),
        ("12a", None),
        ("-5", None),
        ("1.5", None),
        (" 10", None),  # two spaces after the colon: one stays
        ("\u0661\u0662", None),  # Arabic-Indic digits are digits, but not ASCII ones
        ("\u00b2", None),
    ],
    ids=repr,
)
def test_retry_needs_ascii_digits(value: str, expected: int | None) -> None:
    out = run([f"retry: {value}\ndata: x\n\n".encode()])
    assert out.items == [ev("x", retry=expected)]
    assert out.retry == expected


def test_retry_persists_and_applies_without_an_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"retry: 500\n\n") == []
    assert parser.retry == 500
    assert parser.feed(b"data: a\n\nretry: x\ndata: b\n\n") == [
        ev("a", retry=500),
        ev("b", retry=500),
    ]


def test_retry_too_long_for_int_is_ignored() -> None:
    assert parse(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n") == [ev("x")]


# --------------------------------------------------------------------------- comments


def test_comments_are_reported_in_stream_order_without_ending_the_event() -> None:
    raw = b":hb\ndata: a\n: mid\ndata: b\n\n:\n"
    out = run([raw])
    assert out.items == [Comment("hb"), Comment(" mid"), ev("a\nb"), Comment("")]
    assert out.end is False  # a trailing heartbeat is not a cut event


def test_comment_is_reported_as_soon_as_its_line_ends() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n:pi") == []
    assert parser.feed(b"ng\n") == [Comment("ping")]
    assert parser.feed(b"\n") == [ev("a")]


# --------------------------------------------------------------------------- line endings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: a\r\n\r\n", [ev("a")]),
        (b"data: a\r\r", [ev("a")]),
        (b"data: a\n\r", [ev("a")]),
        (b"data: a\r\n\n", [ev("a")]),
        (b"data: a\rdata: b\ndata: c\r\n\r", [ev("a\nb\nc")]),
        (b"data: a\n\r\ndata: b\r\r\n", [ev("a"), ev("b")]),
        (b"data: a\r\n\r\ndata: b\r\n", [ev("a")]),
    ],
    ids=["crlf", "cr", "lf-cr", "crlf-lf", "mixed", "cr-crlf", "crlf-unterminated"],
)
def test_line_endings(raw: bytes, expected: list[Item]) -> None:
    assert parse(raw) == expected
    assert run(bytewise(raw)).items == expected


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"], ids=repr
)
def test_only_cr_and_lf_end_lines(char: str) -> None:
    assert parse(f"data: a{char}b\n\n".encode()) == [ev(f"a{char}b")]


def test_cr_ending_a_chunk_dispatches_at_once_and_next_lf_is_swallowed() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\n\r") == [ev("a")]
    assert parser.feed(b"") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [ev("b")]
    assert parser.finish() is False


def test_cr_ending_a_chunk_then_no_lf_is_a_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\rdata: b\r") == [ev("a")]
    assert parser.feed(b"\r") == [ev("b")]


def test_lf_is_swallowed_only_right_after_the_cr() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\xe2\x82") == []  # a partial character decodes to nothing yet
    assert parser.feed(b"\xac") == []  # the line "\u20ac" (an unknown field) has begun
    assert parser.feed(b"\n\n") == [ev("a")]  # so this LF ends it and is not swallowed


# --------------------------------------------------------------------------- decoding


def test_leading_bom_is_stripped_once() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\n") == [ev("a")]
    # A second BOM is part of the first field name, which is then unknown.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ev("b")]


def test_bom_split_across_chunks_is_stripped() -> None:
    assert run([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]).items == [ev("a")]


def test_bom_after_the_start_is_kept() -> None:
    assert parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: \xef\xbb\xbfc\n\n") == [
        ev("a"),
        ev("\ufeffc"),
    ]


@pytest.mark.parametrize("cut", range(1, 4))
def test_multibyte_character_split_inside(cut: int) -> None:
    raw = "data: \u20ac\U0001f600\n\n".encode()
    start = len(b"data: ")
    chunks = [raw[: start + cut], raw[start + cut :]]
    assert run(chunks).items == [ev("\u20ac\U0001f600")]


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"data: a\xffb\xe2\x82c\n\n") == [ev("a\ufffdb\ufffdc")]


# --------------------------------------------------------------------------- end of stream


@pytest.mark.parametrize(
    ("raw", "discarded"),
    [
        (b"", False),
        (b"data: a\n\n", False),
        (b"data: a\r\n\r", False),
        (b":heartbeat\n", False),
        (b"data: a\n\n:partial comm", False),
        (b"data: a", True),
        (b"data: a\n", True),
        (b"data: a\r", True),
        (b"event: x\n", True),
        (b"id: 1\n", True),
        (b"retry: 10\n", True),
        (b"data: a\n\nd", True),
        (b"data: a\n\n\xe2\x82", True),
        (b"\xef\xbb\xbf", False),
    ],
    ids=repr,
)
def test_finish_reports_a_discarded_event(raw: bytes, discarded: bool) -> None:
    assert run([raw]).end is discarded
    assert run(bytewise(raw)).end is discarded


def test_unterminated_line_is_never_processed() -> None:
    out = run([b"data: a\n\nid: 9\n\nid: 10"])
    assert out.items == [ev("a")]
    assert out.last_event_id == "9"


def test_finish_is_idempotent_and_closes_the_parser() -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n")
    assert parser.finish() is True
    assert parser.finish() is True
    with pytest.raises(RuntimeError):
        parser.feed(b"\n")


# --------------------------------------------------------------------------- size limit


def test_line_plus_data_at_the_limit_is_accepted() -> None:
    # "data: abc" is 9 bytes; the data buffer then holds "abc\n" (4 bytes); 4 + 9 = 13.
    assert run([b"data: abc\ndata: abc\n\n"], max_event_size=13).items == [ev("abc\nabc")]
    assert run([b"data: abc\ndata: abc\n\n"], max_event_size=12).end == "too large"


def test_limit_counts_utf8_bytes() -> None:
    raw = "data:\u20ac\n\n".encode()  # an 8-byte line
    assert run([raw], max_event_size=8).items == [ev("\u20ac")]
    assert run([raw], max_event_size=7).end == "too large"


def test_oversize_event_raises_with_the_items_before_it() -> None:
    parser = SSEParser(max_event_size=32)
    with pytest.raises(EventTooLarge) as info:
        parser.feed(b"data: ok\n\n:hb\n" + b"data: 0123456789\n" * 3 + b"\n")
    assert info.value.events == [ev("ok"), Comment("hb")]
    assert info.value.limit == 32
    assert info.value.size > 32
    assert parser.finish() is True
    with pytest.raises(RuntimeError):
        parser.feed(b"")


def test_endless_line_raises_before_it_ends() -> None:
    parser = SSEParser(max_event_size=1000)
    for _ in range(10):
        assert parser.feed(b"x" * 100) == []
    with pytest.raises(EventTooLarge):
        parser.feed(b"x")


def test_unfinished_line_counts_with_the_pending_data() -> None:
    parser = SSEParser(max_event_size=20)
    assert parser.feed(b"data: 0123456789\ndata: 012") == []  # 11 + 9 bytes held
    with pytest.raises(EventTooLarge):
        parser.feed(b"3")


def test_long_comment_counts_too() -> None:
    assert run([b":" + b"x" * 100 + b"\n"], max_event_size=50).end == "too large"


def test_limit_applies_per_event() -> None:
    raw = b"data: 0123456789\n\n" * 100
    assert run(bytewise(raw), max_event_size=20).items == [ev("0123456789")] * 100


@pytest.mark.parametrize("size", [0, -1])
def test_limit_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEParser(max_event_size=size)


# --------------------------------------------------------------------------- iter_events


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def drain(items: AsyncIterator[Item], seen: list[Item]) -> None:
    async for item in items:
        seen.append(item)


async def collect(chunks: Iterable[bytes], parser: SSEParser | None = None) -> list[Item]:
    return [item async for item in iter_events(agen(chunks), parser)]


@pytest.mark.asyncio
async def test_iter_events_yields_items_across_chunks() -> None:
    parser = SSEParser()
    items = await collect([b":hb\nid: 3\ndata: a\r", b"\n\r", b"\nretry: 9\n\n"], parser)
    assert items == [Comment("hb"), ev("a", id="3")]
    assert (parser.last_event_id, parser.retry) == ("3", 9)


@pytest.mark.asyncio
async def test_iter_events_raises_when_cut_mid_event() -> None:
    seen: list[Item] = []
    with pytest.raises(IncompleteEvent):
        await drain(iter_events(agen([b"data: a\n\ndata: b"])), seen)
    assert seen == [ev("a")]


@pytest.mark.asyncio
async def test_iter_events_yields_what_came_before_an_oversize_event() -> None:
    seen: list[Item] = []
    with pytest.raises(EventTooLarge):
        await drain(iter_events(agen([b"data: a\n\n" + b"x" * 100]), SSEParser(50)), seen)
    assert seen == [ev("a")]


# --------------------------------------------------------------------------- properties

_TRICKY = [" ", ":", "\0", "\ufeff", "0", "7", "\u00e9", "\u20ac", "\U0001f600", "\x85"]
_TRICKY += ["\u2028", "\x0b", "\x0c", "\x1c", "\ufffd", "\u0661"]
_CHARS = st.one_of(
    st.sampled_from(_TRICKY), st.characters(codec="utf-8", exclude_characters="\r\n")
)
_TEXT = st.text(_CHARS, max_size=8)
_FIELD = st.sampled_from(["data", "data", "data", "event", "id", "retry", "Data", "", "x"])
_SEP = st.sampled_from(["", ":", ":", ": ", ":  "])
_LINE = st.one_of(
    st.builds(lambda name, sep, value: name + sep + value, _FIELD, _SEP, _TEXT),
    st.builds(lambda digits: "retry: " + digits, st.text("0123456789", max_size=4)),
    st.builds(lambda text: ":" + text, _TEXT),
    st.just(""),
    st.just(""),
)
_EOL = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Well-formed-ish text: random lines, endings, a BOM, maybe an unterminated tail."""
    bom = draw(st.sampled_from(["", "", "\ufeff"]))
    lines = draw(st.lists(st.tuples(_LINE, _EOL), max_size=25))
    tail: str = draw(st.one_of(st.just(""), _LINE))
    return (bom + "".join(line + eol for line, eol in lines) + tail).encode()


_FRAGMENTS = [b"\r", b"\n", b"\r\n", b"data:", b"data: ", b":", b"id:", b"id: ", b"\x00"]
_FRAGMENTS += [b"event:", b"retry:", b"1", b"x", b"\xef\xbb\xbf", b"\xe2\x82\xac", b"\xe2\x82"]
_FRAGMENTS += [b"\xf0\x9f\x98", b"\xff", b"\xc0\x80", b"\xed\xa0\x80"]
raw_bytes = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=3)), max_size=40)


def split(raw: bytes, data: st.DataObject) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300)
@given(raw=streams(), data=st.data())
def test_any_split_matches_whole_input_and_reference(raw: bytes, data: st.DataObject) -> None:
    whole = run([raw])
    assert whole == reference(raw)
    assert run(split(raw, data)) == whole
    assert run(bytewise(raw)) == whole


@settings(max_examples=200)
@given(parts=raw_bytes, data=st.data())
def test_arbitrary_bytes_any_split_matches_reference(
    parts: list[bytes], data: st.DataObject
) -> None:
    raw = b"".join(parts)
    whole = run([raw])
    assert whole == reference(raw)
    assert run(split(raw, data)) == whole
    assert run(bytewise(raw)) == whole


@settings(max_examples=200)
@given(raw=streams(), limit=st.integers(1, 80), data=st.data())
def test_limit_is_independent_of_chunking(raw: bytes, limit: int, data: st.DataObject) -> None:
    expected = reference(raw, limit)
    if expected.end == "too large":
        expected.last_event_id, expected.retry = "", None  # not read after a failure
    assert run([raw], limit) == expected
    assert run(split(raw, data), limit) == expected
