"""SECS-II items byte by byte, as SEMI E5 §9 lays them out: format byte (6-bit format
code, 2 bits counting the length bytes), big-endian length, big-endian data."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.gem.secs2 import (
    BOOLEAN,
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    A,
    B,
    Fmt,
    L,
    Secs2Error,
    decode,
    encode,
)

# (item, bytes): E5 format codes in octal (L 00, B 10, BOOLEAN 11, A 20, I8 30, I1 31,
# I2 32, I4 34, F8 40, F4 44, U8 50, U1 51, U2 52, U4 54), shifted left 2, plus the
# number of length bytes.
GOLDEN = [
    (L(), "01 00"),
    (L(A("A"), U1(1)), "01 02 41 01 41 a5 01 01"),
    (B(0x00, 0xFF), "21 02 00 ff"),
    (BOOLEAN(True, False), "25 02 01 00"),
    (A("ABC"), "41 03 41 42 43"),
    (A(""), "41 00"),
    (I8(-2), "61 08 ff ff ff ff ff ff ff fe"),
    (I1(-1), "65 01 ff"),
    (I2(-2, 3), "69 04 ff fe 00 03"),
    (I4(1), "71 04 00 00 00 01"),
    (F8(1.0), "81 08 3f f0 00 00 00 00 00 00"),
    (F4(-2.5), "91 04 c0 20 00 00"),
    (U8(1), "a1 08 00 00 00 00 00 00 00 01"),
    (U1(255), "a5 01 ff"),
    (U2(258), "a9 02 01 02"),
    (U4(0x01020304), "b1 04 01 02 03 04"),
    (U4(), "b1 00"),  # a zero-length array (E5: "all" in many requests)
    # S1F4-like nesting: L,2 <L,1 <U1 5>> <A "OK">
    (L(L(U1(5)), A("OK")), "01 02 01 01 a5 01 05 41 02 4f 4b"),
]


@pytest.mark.parametrize(("item", "wire"), GOLDEN, ids=[repr(i) for i, _ in GOLDEN])
def test_items_encode_and_decode_byte_exact(item, wire):
    assert encode(item).hex(" ") == wire
    assert decode(bytes.fromhex(wire)) == item


def test_length_bytes_grow_with_the_data():
    two = encode(A("x" * 256))
    assert two[:3] == bytes([0x42, 0x01, 0x00]) and len(two) == 3 + 256
    three = encode(B(*([7] * 65536)))
    assert three[:4] == bytes([0x23, 0x01, 0x00, 0x00])
    assert decode(three) == B(*([7] * 65536))
    many = encode(L(*[U1(1)] * 300))  # a list's length counts items, not bytes
    assert many[:3] == bytes([0x02, 0x01, 0x2C])


def test_an_empty_body_is_a_header_only_message():
    assert decode(b"") is None


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ("41 05 41 42", "only 2 left"),
        ("40 00", "no length bytes"),
        ("fd 01 00", "unknown format code"),
        ("b1 03 00 00 01", "whole number"),
        ("01 02 a5 01 01", "ends early"),
        ("a5 01 01 00", "after the item"),
    ],
)
def test_broken_bytes_are_refused_with_the_reason(wire, why):
    with pytest.raises(Secs2Error, match=why):
        decode(bytes.fromhex(wire))


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(Secs2Error, match="does not fit in U1"):
        U1(256)
    with pytest.raises(Secs2Error, match="whole numbers"):
        U4(1.5)
    with pytest.raises(Secs2Error, match="not 8-bit"):
        encode(A("€"))
    with pytest.raises(Secs2Error, match="holds items"):
        L("text")


def test_item_accessors_say_what_was_expected():
    body = decode(encode(L(U4(7), A("LOT1"))))
    assert body.items[0].number == 7 and body.items[1].text == "LOT1"
    assert body.python() == [7, "LOT1"]
    with pytest.raises(Secs2Error, match="expected a list"):
        _ = body.items[0].items
    with pytest.raises(Secs2Error, match="expected text"):
        _ = body.items[0].text
    with pytest.raises(Secs2Error, match="expected an integer"):
        _ = F4(1.0).number


_leaf = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=255), max_size=20).map(A),
    st.lists(st.integers(0, 255), max_size=5).map(lambda v: B(*v)),
    st.lists(st.booleans(), max_size=5).map(lambda v: BOOLEAN(*v)),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4).map(lambda v: I4(*v)),
    st.lists(st.integers(0, 2**64 - 1), max_size=3).map(lambda v: U8(*v)),
    st.lists(st.floats(allow_nan=False), max_size=3).map(lambda v: F8(*v)),
)
_items = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4).map(lambda v: L(*v)),
                      max_leaves=20)


@given(_items)
def test_any_item_survives_the_round_trip(item):
    assert decode(encode(item)) == item
    assert item.fmt in Fmt
