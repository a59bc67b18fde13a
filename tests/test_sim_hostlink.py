"""HostLink/1 tool-side engine: framing, checksums, retransmission, every golden frame."""

from __future__ import annotations

from functools import reduce

import pytest

from sim.hostlink import FrameSplitter, HostLinkEndpoint, Nak, checksum, encode_frame
from sim.placer import BallPlacerModel, PlacementReport
from sim.printer import PastePrinterModel, SpiResult


def frame(body: str, ck: str | None = None) -> bytes:
    """A request frame built here, independently of the code under test."""
    if ck is None:
        ck = f"{reduce(lambda a, b: a ^ b, body.encode(), 0):02X}"
    return f"${body}*{ck}\r\n".encode()


def one(endpoint: HostLinkEndpoint, data: bytes, now: float = 0.0) -> bytes:
    replies = endpoint.feed(data, now)
    assert len(replies) == 1, replies
    return replies[0]


def golden(text: str) -> bytes:
    return text.encode() + b"\r\n"


# --- golden frames, byte for byte ---------------------------------------------------------


def test_hostlink_golden_frames() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    exchanges = [
        ("$07,IDN*68", "$07,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*4F"),
        ("$13,PRT*78", "$13,NAK,PRT,04,WRONG STATE*20"),
        ("$14,FOO*6F", "$14,NAK,FOO,02,UNKNOWN COMMAND*2A"),
        ("$18,ALR*7A", "$18,ACK,ALR,0,*2F"),
        ("$30,STS*00", "$30,NAK,STS,01,CHECKSUM*1F"),
    ]
    for request, reply in exchanges:
        assert one(ep, golden(request)) == golden(reply)


def test_printer_status_golden_frame() -> None:
    ep = HostLinkEndpoint(PastePrinterModel(paste_level_pct=87.5, prints_since_wipe=12))
    assert one(ep, golden("$08,STS*70")) == golden(
        "$08,ACK,STS,IDLE,,0,12,87.5,ST-300-100,Pb95Sn5*29"
    )


def test_printer_golden_frames_in_a_real_sequence() -> None:
    printer = PastePrinterModel(paste_level_pct=0.4)
    ep = HostLinkEndpoint(printer)
    t = 0.0
    assert one(ep, golden("$09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20*72"), t) == golden(
        "$09,ACK,RCP*01"
    )
    assert one(ep, golden("$10,LOD,LOT42-07*3D"), t) == golden("$10,ACK,LOD*0F")
    t += 20
    assert one(ep, golden("$11,PRT*7A"), t) == golden("$11,ACK,PRT*1F")
    t += 40
    assert printer.state_at(t) == "DONE" and printer.paste_level_pct == 0.0
    assert one(ep, frame("12,ULD"), t).startswith(b"$12,ACK,ULD*")
    t += 10
    assert one(ep, golden("$15,RCP,HIPB-1,12.0,40,1.0,ST-300-100,1,20*4A"), t) == golden(
        "$15,NAK,RCP,03,BAD PARAMETER*2C"
    )
    # the cartridge is empty: the next print raises alarm 102 instead of starting
    assert one(ep, frame("18,LOD,LOT42-08"), t).startswith(b"$18,ACK,LOD*")
    t += 20
    assert one(ep, frame("19,PRT"), t).startswith(b"$19,ACK,PRT*")
    assert one(ep, golden("$17,ALR*75"), t) == golden("$17,ACK,ALR,102,PASTE EMPTY*05")
    assert printer.prints_executed == 1


def test_printer_changeover_golden_frame() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert one(ep, golden("$16,CHG,ST-300-080,Sn63Pb37*65")) == golden("$16,ACK,CHG*02")


def test_printer_result_example_encodes_byte_for_byte() -> None:
    # RES values are random draws; the encoding of the example's values must be exact
    fields = SpiResult("LOT42-07", "OK", 98.6, 81.2, 117.9, 0, 0).fields()
    assert encode_frame(",".join(["12", "ACK", "RES", *fields])) == golden(
        "$12,ACK,RES,LOT42-07,OK,98.6,81.2,117.9,0,0*71"
    )


def test_placer_golden_frames_in_a_real_sequence() -> None:
    placer = BallPlacerModel(ball_level_pct=66.4, flux_level_pct=72.0)
    ep = HostLinkEndpoint(placer)
    t = 0.0
    assert one(ep, golden("$20,IDN*6D"), t) == golden(
        "$20,ACK,IDN,ACME-BALL,WBM-300,SN0077,1.9.0*4F"
    )
    assert one(ep, golden("$21,RCP,SAC305-250,250,SAC305,25,400,120000*73"), t) == golden(
        "$21,ACK,RCP*0B"
    )
    assert one(ep, frame("26,LOD,LOT42-07"), t).startswith(b"$26,ACK,LOD*")
    t += 20
    assert one(ep, frame("27,PLC"), t).startswith(b"$27,ACK,PLC*")
    t += 25 + 40 + 15
    assert one(ep, golden("$22,STS*78"), t) == golden(
        "$22,ACK,STS,DONE,LOT42-07,0,SAC305,250,64.0,71.5*2B"
    )
    res = one(ep, golden("$23,RES*69"), t)
    assert res.startswith(b"$23,ACK,RES,LOT42-07,OK,120000,")
    assert one(ep, golden("$24,RPR*7A"), t) == golden("$24,ACK,RPR*1F")


def test_placer_supply_alarm_golden_frame() -> None:
    placer = BallPlacerModel(ball_level_pct=1.0)  # 50,000 balls: short for 120,000 sites
    ep = HostLinkEndpoint(placer)
    one(ep, golden("$21,RCP,SAC305-250,250,SAC305,25,400,120000*73"))
    one(ep, frame("26,LOD,W1"))
    assert one(ep, frame("27,PLC"), 20.0).startswith(b"$27,ACK,PLC*")
    assert one(ep, golden("$25,ALR*74"), 20.0) == golden("$25,ACK,ALR,111,BALL SUPPLY EMPTY*65")


def test_placer_result_example_encodes_byte_for_byte() -> None:
    fields = PlacementReport("LOT42-07", "OK", 120000, 119996, 4, 0, 11).fields()
    assert encode_frame(",".join(["23", "ACK", "RES", *fields])) == golden(
        "$23,ACK,RES,LOT42-07,OK,120000,119996,4,0,11*57"
    )


# --- checksum and encoding ----------------------------------------------------------------


def test_checksum_is_uppercase_hex_xor() -> None:
    assert checksum(b"07,IDN") == "68"
    assert checksum(b"30,STS") == "7B"
    assert checksum(b"") == "00"
    assert checksum(b"\x0a") == "0A"


def test_encode_refuses_a_frame_over_255_bytes() -> None:
    assert len(encode_frame("x" * 249)) == 255
    with pytest.raises(ValueError, match="255"):
        encode_frame("x" * 250)


# --- framing ------------------------------------------------------------------------------


def test_bytes_before_dollar_are_discarded() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    reply = one(ep, b"\x00\xffnoise\r\n" + golden("$07,IDN*68"))
    assert reply.startswith(b"$07,ACK,IDN,")


def test_frame_arriving_byte_by_byte_and_frames_back_to_back() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    data = golden("$07,IDN*68")
    replies: list[bytes] = []
    for b in data:
        replies += ep.feed(bytes([b]), 0.0)
    assert replies == [golden("$07,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*4F")]
    both = ep.feed(frame("01,ALR") + frame("02,ALR"), 0.0)
    assert [r[:3] for r in both] == [b"$01", b"$02"]


def test_frame_without_crlf_within_255_bytes_is_discarded() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert ep.feed(b"$01,IDN," + b"A" * 300, 0.0) == []
    assert ep.feed(b"*00\r\n", 0.0) == []  # the tail of the oversize frame is noise
    assert one(ep, frame("02,IDN")).startswith(b"$02,ACK,IDN,")


def test_frame_of_exactly_255_bytes_is_taken_and_256_is_not() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    body = "03,LOD," + "W" * 242
    assert len(frame(body)) == 255
    assert one(ep, frame(body)) == encode_frame("03,NAK,LOD,04,WRONG STATE")
    assert len(frame(body + "W")) == 256
    assert ep.feed(frame(body + "W"), 0.0) == []


def test_new_dollar_restarts_an_unfinished_frame() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert one(ep, b"$05,ST" + frame("06,ALR")).startswith(b"$06,ACK,ALR,")


def test_lf_without_cr_does_not_end_a_frame() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert ep.feed(b"$07,IDN*68\n", 0.0) == []
    assert one(ep, frame("08,ALR")).startswith(b"$08,ACK,ALR,")


def test_splitter_counts_discarded_bytes() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"xx$01,IDN*6E\r\nyy") == [b"01,IDN*6E"]
    assert splitter.discarded == 4


# --- checksum failures --------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["*00", "*7a", "", "*7", "*7AA"])
def test_wrong_or_missing_checksum_gets_nak_01(tail: str) -> None:
    # the right checksum of "31,STS" is 7A; lowercase is not a valid CK
    ep = HostLinkEndpoint(PastePrinterModel())
    assert one(ep, f"$31,STS{tail}\r\n".encode()) == encode_frame("31,NAK,STS,01,CHECKSUM")
    assert ep.checksum_errors == 1


@pytest.mark.parametrize("bad", [b"$3x,STS*00\r\n", b"$31*00\r\n", b"$31,st*00\r\n", b"$*00\r\n"])
def test_unreadable_frame_with_wrong_checksum_gets_no_reply(bad: bytes) -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert ep.feed(bad, 0.0) == []
    assert ep.unanswered == 1


def test_checksum_error_does_not_change_the_tool() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    rcp = "09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"
    assert one(ep, frame(rcp, "00")) == encode_frame("09,NAK,RCP,01,CHECKSUM")
    assert printer.recipe is None


def test_corrupted_request_then_clean_retransmission_is_executed() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    one(ep, frame("10,LOD,W1"))
    assert one(ep, frame("11,PRT", "00"), 20.0) == encode_frame("11,NAK,PRT,01,CHECKSUM")
    # the host retransmits the identical, now undamaged frame: it must run, not be replayed
    assert one(ep, frame("11,PRT"), 20.0) == encode_frame("11,ACK,PRT")
    assert printer.prints_executed == 1


# --- field rules --------------------------------------------------------------------------


def test_unreadable_seq_gets_no_reply() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert ep.feed(frame("7,IDN"), 0.0) == []
    assert ep.feed(frame("AB,IDN"), 0.0) == []
    assert ep.feed(frame("07"), 0.0) == []


@pytest.mark.parametrize("cmd", ["idn", "ID", "IDNX", "", "123"])
def test_malformed_command_is_unknown(cmd: str) -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert one(ep, frame(f"40,{cmd}")) == encode_frame(f"40,NAK,{cmd},02,UNKNOWN COMMAND")


def test_non_printable_argument_is_bad_parameter() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    assert one(ep, frame("41,LOD,W\x01")) == encode_frame("41,NAK,LOD,03,BAD PARAMETER")
    assert printer.wafer_id is None


def test_a_star_in_a_field_is_refused_never_echoed() -> None:
    """hostlink.md: fields hold printable ASCII "except $ * ,". A wafer id with a * would
    come back in every STS, which a conforming host cannot read."""
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    assert one(ep, frame("43,LOD,AB*C")) == encode_frame("43,NAK,LOD,03,BAD PARAMETER")
    assert printer.wafer_id is None
    assert ep.feed(frame("44,ST*"), 0.0) == []  # no CMD to echo: silence, as for a bad SEQ


def test_empty_fields_are_allowed_and_counted() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    assert one(ep, frame("42,STS,")) == encode_frame("42,NAK,STS,03,BAD PARAMETER")


def test_reply_echoes_seq_and_cmd() -> None:
    ep = HostLinkEndpoint(PastePrinterModel())
    for seq in ("00", "57", "99"):
        assert one(ep, frame(f"{seq},ALR")) == encode_frame(f"{seq},ACK,ALR,0,")


# --- idempotent retransmission ------------------------------------------------------------


def test_repeated_print_frame_prints_once_and_gets_the_same_reply() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    one(ep, frame("10,LOD,W1"))
    first = one(ep, frame("11,PRT"), 20.0)
    again = one(ep, frame("11,PRT"), 21.0)
    assert again == first == encode_frame("11,ACK,PRT")
    assert printer.prints_executed == 1
    assert printer.paste_level_pct == 99.6
    assert ep.retransmissions == 1
    # a new SEQ with the same body is a new request: the printer is busy, so it is refused
    assert one(ep, frame("12,PRT"), 22.0) == encode_frame("12,NAK,PRT,04,WRONG STATE")
    assert printer.prints_executed == 1


def test_retransmission_replays_even_when_the_state_has_moved_on() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    one(ep, frame("10,LOD,W1"))
    sts_loading = one(ep, frame("11,STS"), 1.0)
    assert b",LOADING," in sts_loading
    assert one(ep, frame("11,STS"), 30.0) == sts_loading  # byte for byte, not re-executed
    assert b",READY," in one(ep, frame("12,STS"), 30.0)


def test_retransmitted_refusal_is_replayed_too() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    nak = one(ep, frame("50,LOD,W1"))  # no recipe yet
    assert nak == encode_frame("50,NAK,LOD,04,WRONG STATE")
    assert one(ep, frame("50,LOD,W1")) == nak
    assert printer.wafers_loaded == 0


def test_same_seq_different_body_is_executed() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("60,ALR"))
    assert one(ep, frame("60,IDN")).startswith(b"$60,ACK,IDN,")
    assert ep.retransmissions == 0


def test_only_the_previous_request_is_remembered() -> None:
    printer = PastePrinterModel()
    ep = HostLinkEndpoint(printer)
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    one(ep, frame("10,STS"))
    # the RCP is no longer the previous request: sending it again executes it again
    one(ep, frame("09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
    assert ep.retransmissions == 0 and ep.requests == 3


def test_nak_carries_code_and_text() -> None:
    nak = Nak(6, "door open")
    assert (nak.code, nak.text, nak.detail) == (6, "INTERLOCK", "door open")
