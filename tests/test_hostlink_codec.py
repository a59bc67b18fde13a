"""HostLink/1 codec: every golden frame of the specs, byte for byte, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.hostlink import (
    MAX_FRAME,
    ChecksumError,
    FrameError,
    FrameExtractor,
    Reply,
    Request,
    checksum,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)

# (frame as printed in the spec, request it encodes) — hostlink.md, paste-printer.md, ball-placer.md
HOST_FRAMES = [
    ("$07,IDN*68", Request(7, "IDN")),
    ("$13,PRT*78", Request(13, "PRT")),
    ("$14,FOO*6F", Request(14, "FOO")),
    ("$18,ALR*7A", Request(18, "ALR")),
    ("$08,STS*70", Request(8, "STS")),
    (
        "$09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20*72",
        Request(9, "RCP", ("HIPB-1", "6.0", "40", "1.0", "ST-300-100", "1", "20")),
    ),
    ("$10,LOD,LOT42-07*3D", Request(10, "LOD", ("LOT42-07",))),
    ("$11,PRT*7A", Request(11, "PRT")),
    (
        "$15,RCP,HIPB-1,12.0,40,1.0,ST-300-100,1,20*4A",
        Request(15, "RCP", ("HIPB-1", "12.0", "40", "1.0", "ST-300-100", "1", "20")),
    ),
    ("$16,CHG,ST-300-080,Sn63Pb37*65", Request(16, "CHG", ("ST-300-080", "Sn63Pb37"))),
    ("$17,ALR*75", Request(17, "ALR")),
    ("$20,IDN*6D", Request(20, "IDN")),
    (
        "$21,RCP,SAC305-250,250,SAC305,25,400,120000*73",
        Request(21, "RCP", ("SAC305-250", "250", "SAC305", "25", "400", "120000")),
    ),
    ("$22,STS*78", Request(22, "STS")),
    ("$23,RES*69", Request(23, "RES")),
    ("$24,RPR*7A", Request(24, "RPR")),
    ("$25,ALR*74", Request(25, "ALR")),
]

TOOL_FRAMES = [
    (
        "$07,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*4F",
        Reply(7, True, "IDN", ("ACME-PRINT", "WP-300", "SN1042", "2.4.1")),
    ),
    ("$13,NAK,PRT,04,WRONG STATE*20", Reply(13, False, "PRT", ("04", "WRONG STATE"))),
    ("$14,NAK,FOO,02,UNKNOWN COMMAND*2A", Reply(14, False, "FOO", ("02", "UNKNOWN COMMAND"))),
    ("$18,ACK,ALR,0,*2F", Reply(18, True, "ALR", ("0", ""))),
    ("$30,NAK,STS,01,CHECKSUM*1F", Reply(30, False, "STS", ("01", "CHECKSUM"))),
    (
        "$08,ACK,STS,IDLE,,0,12,87.5,ST-300-100,Pb95Sn5*29",
        Reply(8, True, "STS", ("IDLE", "", "0", "12", "87.5", "ST-300-100", "Pb95Sn5")),
    ),
    ("$09,ACK,RCP*01", Reply(9, True, "RCP")),
    ("$10,ACK,LOD*0F", Reply(10, True, "LOD")),
    ("$11,ACK,PRT*1F", Reply(11, True, "PRT")),
    (
        "$12,ACK,RES,LOT42-07,OK,98.6,81.2,117.9,0,0*71",
        Reply(12, True, "RES", ("LOT42-07", "OK", "98.6", "81.2", "117.9", "0", "0")),
    ),
    ("$15,NAK,RCP,03,BAD PARAMETER*2C", Reply(15, False, "RCP", ("03", "BAD PARAMETER"))),
    ("$16,ACK,CHG*02", Reply(16, True, "CHG")),
    ("$17,ACK,ALR,102,PASTE EMPTY*05", Reply(17, True, "ALR", ("102", "PASTE EMPTY"))),
    (
        "$20,ACK,IDN,ACME-BALL,WBM-300,SN0077,1.9.0*4F",
        Reply(20, True, "IDN", ("ACME-BALL", "WBM-300", "SN0077", "1.9.0")),
    ),
    ("$21,ACK,RCP*0B", Reply(21, True, "RCP")),
    (
        "$22,ACK,STS,DONE,LOT42-07,0,SAC305,250,64.0,71.5*2B",
        Reply(22, True, "STS", ("DONE", "LOT42-07", "0", "SAC305", "250", "64.0", "71.5")),
    ),
    (
        "$23,ACK,RES,LOT42-07,OK,120000,119996,4,0,11*57",
        Reply(23, True, "RES", ("LOT42-07", "OK", "120000", "119996", "4", "0", "11")),
    ),
    ("$24,ACK,RPR*1F", Reply(24, True, "RPR")),
    ("$25,ACK,ALR,111,BALL SUPPLY EMPTY*65", Reply(25, True, "ALR", ("111", "BALL SUPPLY EMPTY"))),
]


def wire(text: str) -> bytes:
    return text.encode("ascii") + b"\r\n"


@pytest.mark.parametrize(("text", "request_"), HOST_FRAMES, ids=[t for t, _ in HOST_FRAMES])
def test_host_golden_frames_encode_exactly(text: str, request_: Request) -> None:
    assert encode_request(request_.seq, request_.cmd, request_.args) == wire(text)
    assert parse_request(wire(text)) == request_


@pytest.mark.parametrize(("text", "reply"), TOOL_FRAMES, ids=[t for t, _ in TOOL_FRAMES])
def test_tool_golden_frames_parse(text: str, reply: Reply) -> None:
    assert parse_reply(wire(text)) == reply
    # and a tool built on this codec would send the same bytes
    assert encode_reply(reply.seq, reply.cmd, reply.fields, ack=reply.ack) == wire(text)


def test_nak_code_and_text() -> None:
    reply = parse_reply(wire("$13,NAK,PRT,04,WRONG STATE*20"))
    assert (reply.nak_code, reply.nak_text) == (4, "WRONG STATE")
    ok = parse_reply(wire("$11,ACK,PRT*1F"))
    assert (ok.nak_code, ok.nak_text) == (None, "")


def test_golden_wrong_checksum_is_detected() -> None:
    # hostlink.md: "$30,STS*00  host, checksum wrong (right: 7B)"
    with pytest.raises(ChecksumError, match="expected 7B"):
        parse_request(wire("$30,STS*00"))
    assert checksum(b"30,STS") == 0x7B


def test_all_golden_frames_through_extractor_with_garbage() -> None:
    stream = b"\x00\xffnoise"
    for text, _ in TOOL_FRAMES:
        stream += wire(text) + b"junk\r\n"
    extractor = FrameExtractor()
    frames = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        frames += extractor.feed(stream[i : i + 7])
    assert [parse_reply(f) for f in frames] == [r for _, r in TOOL_FRAMES]
    assert extractor.pending == 0


# --- encoding refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a,b", "a*b", "$x", "tab\there", "é", "\x7f", "line\r\n"])
def test_forbidden_field_text_is_refused(bad: str) -> None:
    with pytest.raises(FrameError, match="only printable ASCII"):
        encode_request(1, "LOD", [bad])


def test_field_must_be_text() -> None:
    with pytest.raises(FrameError, match="must be text"):
        encode_request(1, "LOD", [42])  # type: ignore[list-item]


@pytest.mark.parametrize("seq", [-1, 100, 1.0, True])
def test_sequence_out_of_range_is_refused(seq: object) -> None:
    with pytest.raises(FrameError, match="sequence number must be 0-99"):
        encode_request(seq, "STS")  # type: ignore[arg-type]


@pytest.mark.parametrize("cmd", ["sts", "ST", "STSX", "S1S", ""])
def test_command_must_be_three_uppercase_letters(cmd: str) -> None:
    with pytest.raises(FrameError, match="three uppercase letters"):
        encode_request(1, cmd)


def test_frame_length_limit_is_255_bytes() -> None:
    # "$00,LOD," + arg + "*CK\r\n" = 8 + n + 5 bytes
    assert len(encode_request(0, "LOD", ["x" * (MAX_FRAME - 13)])) == MAX_FRAME
    with pytest.raises(FrameError, match="at most 255"):
        encode_request(0, "LOD", ["x" * (MAX_FRAME - 12)])


# --- parsing refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"$07,ACK,IDN*4f\r\n", "uppercase hex"),
        (b"$07,ACK,IDN*4F\n", "not a"),
        (b"07,ACK,IDN*4F\r\n", "not a"),
        (b"$07,ACK,IDN\r\n", "not a"),
        (b"$7,ACK,IDN*" + b"%02X" % checksum(b"7,ACK,IDN") + b"\r\n", "not a reply"),
        (b"$07,ACK,idn*" + b"%02X" % checksum(b"07,ACK,idn") + b"\r\n", "not a reply"),
        (b"$07,YES,IDN*" + b"%02X" % checksum(b"07,YES,IDN") + b"\r\n", "neither ACK nor NAK"),
        (b"$07,NAK,IDN,04*" + b"%02X" % checksum(b"07,NAK,IDN,04") + b"\r\n", "NAK carries"),
        (b"$07,NAK,IDN,X,Y*" + b"%02X" % checksum(b"07,NAK,IDN,X,Y") + b"\r\n", "NAK carries"),
        (b"$07,ACK,IDN,\x01*" + b"%02X" % checksum(b"07,ACK,IDN,\x01") + b"\r\n", "forbidden"),
        (b"$" + b"x" * 250 + b"*00\r\n", "over the 255-byte limit"),
    ],
)
def test_malformed_replies_raise_frame_error(frame: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        parse_reply(frame)


def test_a_request_is_not_a_reply() -> None:
    with pytest.raises(FrameError, match="not a reply"):
        parse_reply(wire("$07,IDN*68"))


# --- extractor -----------------------------------------------------------------------------------


def test_extractor_drops_garbage_before_dollar() -> None:
    ex = FrameExtractor()
    assert ex.feed(b"xx\r\n\x00") == []
    assert ex.feed(b"zz$11,ACK,PRT*1F\r") == []
    assert ex.feed(b"\n") == [wire("$11,ACK,PRT*1F")]
    assert ex.discarded == 7


def test_extractor_drops_over_long_frame_and_recovers() -> None:
    ex = FrameExtractor()
    assert ex.feed(b"$" + b"A" * 400) == []
    assert ex.pending < MAX_FRAME
    assert ex.feed(b"\r\n$10,ACK,LOD*0F\r\n") == [wire("$10,ACK,LOD*0F")]


def test_extractor_keeps_dollar_inside_a_frame() -> None:
    # a truncated frame followed by a complete one comes out as one invalid frame
    ex = FrameExtractor()
    (frame,) = ex.feed(b"$12,AC$10,ACK,LOD*0F\r\n")
    with pytest.raises(FrameError):
        parse_reply(frame)


# --- properties ----------------------------------------------------------------------------------

FIELD_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "$*,")
fields_st = st.lists(st.text(alphabet=FIELD_ALPHABET, max_size=40), max_size=8)
cmd_st = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
seq_st = st.integers(0, 99)


def _fits(fields: list[str], extra: int) -> bool:
    return 1 + 6 + extra + sum(len(f) + 1 for f in fields) + 5 <= MAX_FRAME


@given(st.binary(max_size=300))
def test_checksum_is_the_xor_of_every_byte(body: bytes) -> None:
    expected = 0
    for b in body:
        expected ^= b
    assert checksum(body) == expected


@given(seq_st, cmd_st, fields_st)
def test_request_round_trip(seq: int, cmd: str, args: list[str]) -> None:
    if not _fits(args, 0):
        with pytest.raises(FrameError, match="at most 255"):
            encode_request(seq, cmd, args)
        return
    frame = encode_request(seq, cmd, args)
    assert parse_request(frame) == Request(seq, cmd, tuple(args))
    assert FrameExtractor().feed(b"noise" + frame) == [frame]


@given(seq_st, cmd_st, fields_st, st.booleans())
def test_reply_round_trip(seq: int, cmd: str, fields: list[str], ack: bool) -> None:
    if not ack:
        fields = ["03", fields[0] if fields else "BAD PARAMETER"]
    if not _fits(fields, 4):
        return
    frame = encode_reply(seq, cmd, fields, ack=ack)
    assert parse_reply(frame) == Reply(seq, ack, cmd, tuple(fields))


@settings(max_examples=300)
@given(seq_st, cmd_st, fields_st, st.data())
def test_any_single_corrupted_byte_is_detected(
    seq: int, cmd: str, fields: list[str], data: st.DataObject
) -> None:
    if not _fits(fields, 4):
        return
    frame = encode_reply(seq, cmd, fields)
    pos = data.draw(st.integers(0, len(frame) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[pos]), label="byte")
    damaged = frame[:pos] + bytes([new]) + frame[pos + 1 :]
    follow = encode_reply((seq + 1) % 100, "STS", ["IDLE"])
    last = encode_reply((seq + 2) % 100, "RES", ["W1"])
    ex = FrameExtractor()
    out = ex.feed(damaged + follow + last)
    parsed = []
    for f in out:
        try:
            parsed.append(parse_reply(f))
        except FrameError:
            pass
    # the damaged frame never parses (as itself or anything else); the stream recovers
    # (the follower may be swallowed when the damaged byte was the frame's '\n')
    assert parsed in ([parse_reply(follow), parse_reply(last)], [parse_reply(last)])


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_extractor_never_crashes_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    ex = FrameExtractor()
    for chunk in chunks:
        for frame in ex.feed(chunk):
            assert frame.startswith(b"$") and frame.endswith(b"\n")
            assert len(frame) <= MAX_FRAME
            try:
                parse_reply(frame)
            except FrameError:
                pass
        assert ex.pending < MAX_FRAME


@settings(max_examples=200)
@given(seq_st, cmd_st, fields_st, st.data())
def test_a_body_seen_before_is_still_checked_in_full(
    seq: int, cmd: str, fields: list[str], data: st.DataObject
) -> None:
    """parse_reply keeps the bodies it has checked (a tool polled at rest repeats one):
    the same body under another SEQ parses as such, and no single damaged byte of a kept
    one gets through."""
    if not _fits(fields, 4):
        return
    frame = encode_reply(seq, cmd, fields)
    assert parse_reply(frame) == Reply(seq, True, cmd, tuple(fields))  # now kept
    other = (seq + 37) % 100
    assert parse_reply(encode_reply(other, cmd, fields)) == Reply(other, True, cmd, tuple(fields))
    pos = data.draw(st.integers(0, len(frame) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[pos]), label="byte")
    with pytest.raises(FrameError):
        parse_reply(frame[:pos] + bytes([new]) + frame[pos + 1 :])
