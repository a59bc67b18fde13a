"""Register maps as data: one TOML file per tool model in ``drivers/maps/``.

A map names every register, coil and input of a Modbus tool: which table it
lives in, its address, how many registers it spans, how to decode it (type,
scale, unit), its valid range, and the codes written to or read from it. The
drivers look registers up by name, so another oven model means another map
file, not another driver. A model that is a known tool plus some registers (the
FC-2 is the FC-1 with a strip mode) says ``extends = "fc-1"`` and lists only what
it adds or changes. See ``docs/protocols.md`` for the file format.

Everything here is pure: encode/decode between engineering values and 16-bit
words, and the map loader. No I/O beyond reading the map file.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

MAPS_DIR = Path(__file__).parent / "maps"
TABLES = ("holding", "input", "coil", "discrete")
BIT_TABLES = ("coil", "discrete")
TYPES = ("u16", "s16", "u32", "ascii", "bool")
WORDS_PER_VALUE = {"u16": 1, "s16": 1, "u32": 2}
U16_MAX = 0xFFFF


class RegisterMapError(ValueError):
    """A register map file that cannot be used, naming the file, key and what was expected."""


# --- pure codecs --------------------------------------------------------------------------------


def s16(word: int) -> int:
    """A 16-bit register word read as two's complement."""
    return word - 0x10000 if word & 0x8000 else word


def s16_word(value: int) -> int:
    """The register word for a signed 16-bit value."""
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"{value} does not fit a signed 16-bit register (-32768..32767)")
    return value & 0xFFFF


def u32(high: int, low: int) -> int:
    """Two register words, high word first, as one unsigned 32-bit value."""
    return (high << 16) | low


def u32_words(value: int) -> list[int]:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit an unsigned 32-bit register pair")
    return [value >> 16, value & 0xFFFF]


def ascii_words(text: str, count: int) -> list[int]:
    """Text as ``count`` registers: two characters each, high byte first, NUL padded."""
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not plain ASCII") from None
    if len(data) > 2 * count:
        raise ValueError(f"{text!r} is longer than {2 * count} characters")
    if b"\0" in data:
        raise ValueError(f"{text!r} contains a NUL character")
    data = data.ljust(2 * count, b"\0")
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


def ascii_text(words: Iterable[int]) -> str:
    """Registers back to text: cut at the first NUL, trailing blanks dropped (a tool may
    pad an id with spaces where its spec names no padding: docs/protocols.md)."""
    data = b"".join(w.to_bytes(2, "big") for w in words)
    return data.split(b"\0", 1)[0].rstrip(b" ").decode("ascii", errors="replace")


def _decimals(scale: float) -> int:
    """Digits a scaled value carries (0.1 -> 1, 0.25 -> 2, 1 -> 0)."""
    return max(0, -int(Decimal(str(scale)).as_tuple().exponent))


def scaled(raw: int, scale: float) -> float | int:
    """A raw register value in engineering units (``2251`` at 0.1 -> ``225.1``)."""
    if scale == 1:
        return raw
    return round(raw * scale, _decimals(scale))


def unscaled(value: float, scale: float) -> int:
    """An engineering value as the nearest raw register value (``225.1`` at 0.1 -> ``2251``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return round(value / scale)


# --- the map ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """One named entry of a map: a run of ``count`` registers (or bits) in one table."""

    name: str
    table: str  # holding | input | coil | discrete
    address: int
    count: int = 1  # registers (or bits) spanned
    type: str = "u16"  # u16 | s16 | u32 | ascii | bool
    scale: float = 1
    unit: str = ""
    range: tuple[int, int] | None = None  # valid raw values, as the vendor's table gives them
    description: str = ""
    codes: Mapping[str, int] = field(default_factory=dict)  # command / state codes
    bits: Mapping[str, int] = field(default_factory=dict)  # bit number of each flag
    no_reading: int | None = None  # raw value meaning "no reading" (a failed thermocouple)

    def __post_init__(self) -> None:
        # Decoding sits on the zone-read hot path: work out the rounding once. A scale of
        # 10^-d divides by 10^d instead: a true division is correctly rounded, so it gives
        # the same float as round(raw * scale, d), at a tenth of the cost.
        digits = _decimals(self.scale) if self.scale != 1 else None
        divisor = 10**digits if digits is not None and self.scale == 10.0**-digits else None
        object.__setattr__(self, "_digits", digits)
        object.__setattr__(self, "_divisor", divisor)

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count

    @property
    def values(self) -> int:
        """How many values the entry holds (10 for ZONE_SP[1..10], 1 for a u32 or a text)."""
        if self.type in WORDS_PER_VALUE:
            return self.count // WORDS_PER_VALUE[self.type]
        return self.count if self.type == "bool" else 1

    # decoding: words (or bits) -> engineering values

    def decode_all(self, words: Sequence[int]) -> tuple[Any, ...]:
        """Every value of the entry, in engineering units."""
        if len(words) != self.count:
            raise ValueError(f"{self.name}: expected {self.count} words, got {len(words)}")
        if self.type == "ascii":
            return (ascii_text(words),)
        if self.type == "bool":
            return tuple(bool(w) for w in words)
        if self.type == "u32":
            return tuple(self._engineering(raw, unsigned) for raw, unsigned in self._raws(words))
        # u16 / s16, the common case (zones, exit curve): one pass, no per-value calls
        none_at, divisor = self.no_reading, self._divisor  # type: ignore[attr-defined]
        if self.type == "s16":
            words = [w - 0x10000 if w >= 0x8000 else w for w in words]
            if none_at is not None and none_at >= 0x8000:
                none_at -= 0x10000  # compared with the signed value, as the word it is
        if divisor is not None:
            return tuple([None if w == none_at else w / divisor for w in words])
        digits, scale = self._digits, self.scale  # type: ignore[attr-defined]
        if digits is None:
            return tuple([None if w == none_at else w for w in words])
        return tuple([None if w == none_at else round(w * scale, digits) for w in words])

    def _raws(self, words: Sequence[int]) -> list[tuple[int, int]]:
        """(value as the type reads it, the unsigned word value) for each value."""
        if self.type == "u32":
            return [(v, v) for v in (u32(words[i], words[i + 1]) for i in range(0, len(words), 2))]
        if self.type == "s16":
            return [(s16(w), w) for w in words]
        return [(w, w) for w in words]

    def decode(self, words: Sequence[int]) -> Any:
        """The single value of a one-value entry."""
        if self.values != 1:
            raise ValueError(f"{self.name} holds {self.values} values; use decode_all")
        return self.decode_all(words)[0]

    def _engineering(self, raw: int, unsigned: int) -> Any:
        if self.no_reading is not None and unsigned == self.no_reading:
            return None
        digits = self._digits  # type: ignore[attr-defined]
        return raw if digits is None else round(raw * self.scale, digits)

    # encoding: engineering values -> words

    def encode_all(self, values: Sequence[Any]) -> list[int]:
        """Words for every value of the entry; checks what the type can carry, not the range."""
        if self.type == "ascii":
            (text,) = values
            return self._checked(ascii_words, text, self.count)
        if len(values) != self.values:
            raise ValueError(f"{self.name}: expected {self.values} values, got {len(values)}")
        words: list[int] = []
        for value in values:
            if self.type == "bool":
                words.append(int(bool(value)))
                continue
            raw = self._checked(unscaled, value, self.scale)
            if self.type == "s16":
                words.append(self._checked(s16_word, raw))
            elif self.type == "u32":
                words.extend(self._checked(u32_words, raw))
            elif 0 <= raw <= U16_MAX:
                words.append(raw)
            else:
                raise ValueError(f"{self.name}: {value!r} does not fit an unsigned 16-bit register")
        return words

    def encode(self, value: Any) -> list[int]:
        return self.encode_all([value])

    def _checked(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    # ranges and codes

    def out_of_range(self, words: Sequence[int]) -> list[str]:
        """Why some of these words would be refused (the vendor's range), one text per value."""
        if self.range is None or self.type not in WORDS_PER_VALUE:
            return []
        low, high = self.range
        problems = []
        for index, (raw, _) in enumerate(self._raws(words)):
            if not low <= raw <= high:
                label = f"{self.name}[{index + 1}]" if self.values > 1 else self.name
                unit = f" {self.unit}" if self.unit else ""
                problems.append(
                    f"{label}={scaled(raw, self.scale)}{unit} outside "
                    f"{scaled(low, self.scale)}..{scaled(high, self.scale)}{unit}"
                )
        return problems

    def code(self, name: str) -> int:
        try:
            return self.codes[name]
        except KeyError:
            known = ", ".join(self.codes) or "none"
            raise KeyError(f"{self.name} has no code {name!r} (codes: {known})") from None

    def code_name(self, value: int) -> str:
        for name, code in self.codes.items():
            if code == value:
                return name
        return f"UNKNOWN({value})"


@dataclass(frozen=True)
class Block:
    """Several named entries of one table read together: one request per run.

    ``runs`` are the (address, count) requests that cover the entries. Where a
    map says its tool answers reads across unmapped addresses, one run spans
    everything; otherwise each contiguous group of entries is its own run.
    """

    table: str
    address: int
    count: int
    entries: tuple[Register, ...]
    runs: tuple[tuple[int, int], ...]

    @property
    def contiguous(self) -> bool:
        return sum(r.count for r in self.entries) == self.count

    @property
    def label(self) -> str:
        first, last = self.entries[0].name, self.entries[-1].name
        return first if first == last else f"{first}..{last}"

    def words_of(self, register: Register, words: Sequence[int]) -> Sequence[int]:
        start = register.address - self.address
        return words[start : start + register.count]

    def decode(self, words: Sequence[int]) -> dict[str, Any]:
        """Each entry's value (a tuple for array entries) from one read of the block."""
        out: dict[str, Any] = {}
        for reg in self.entries:
            values = reg.decode_all(self.words_of(reg, words))
            out[reg.name] = values if reg.values > 1 else values[0]
        return out


@dataclass(frozen=True)
class RegisterMap:
    model: str
    registers: Mapping[str, Register]
    alarms: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    unit: int | None = None  # the model's default Modbus unit id
    read_across_gaps: bool = False  # the tool answers reads spanning unmapped addresses
    source: str = "<memory>"
    role: str = ""  # the line role the model serves (oven, cleaner); "" = not said
    extends: str = ""  # the model this map builds on, if any

    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(
                f"register map {self.model} ({self.source}) has no register {name!r}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.registers

    def has_code(self, register: str, code_name: str) -> bool:
        """Whether this model has ``register`` and it knows ``code_name`` (a capability)."""
        return register in self.registers and code_name in self.registers[register].codes

    def present(self, *names: str) -> tuple[str, ...]:
        """The names this model maps, in the order given (optional registers of a family)."""
        return tuple(n for n in names if n in self.registers)

    def block(self, *names: str) -> Block:
        """The requests that read the named entries (all in one table) together."""
        entries = sorted((self[n] for n in names), key=lambda r: r.address)
        tables = {r.table for r in entries}
        if len(tables) != 1:
            shown = ", ".join(sorted(tables))
            raise ValueError(f"{', '.join(names)} are in different tables ({shown})")
        start, end = entries[0].address, max(r.end for r in entries)
        table = tables.pop()
        block = Block(table, start, end - start, tuple(entries), ((start, end - start),))
        return block if self.read_across_gaps else self.gap_free(block)

    def gap_free(self, block: Block) -> Block:
        """The block read in mapped runs only: split where the map has no register (those
        a tool may refuse to read, exception 02)."""
        mapped = {a for r in self.registers.values() if r.table == block.table
                  for a in range(r.address, r.end)}
        runs: list[tuple[int, int]] = []
        for a in range(block.address, block.address + block.count):
            if a not in mapped:
                continue
            if runs and runs[-1][0] + runs[-1][1] == a:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((a, 1))
        return replace(block, runs=tuple(runs))

    def alarm_text(self, code: int) -> str:
        return self.alarms.get(code, "UNKNOWN ALARM")


# --- loading ------------------------------------------------------------------------------------


def known_models() -> list[str]:
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))


@functools.cache
def models_for_role(role: str) -> dict[str, str]:
    """Shipped models that say they serve ``role``: upper-case model name -> map stem."""
    out = {}
    for stem in known_models():
        m = load_register_map(stem)
        if m.role == role:
            out[m.model.upper()] = stem
    return out


def map_path(model_name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """A model name (``rf-10n``, ``RF-10N``) or a path to a map file (relative to the
    map that names it, for ``extends``)."""
    text = str(model_name_or_path)
    if isinstance(model_name_or_path, Path) or text.endswith(".toml") or "/" in text:
        path = Path(text)
        return relative_to / path if relative_to is not None and not path.is_absolute() else path
    path = MAPS_DIR / f"{text.lower()}.toml"
    if not path.exists():
        raise RegisterMapError(
            f"no register map for tool model {text!r} (known: {', '.join(known_models())}); "
            f"give a model name or the path of a map file"
        )
    return path


def load_register_map(
    model_name_or_path: str | Path, *, _chain: tuple[str, ...] = ()
) -> RegisterMap:
    path = map_path(model_name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegisterMapError(f"{path}: cannot read register map: {exc.strerror}") from None
    return parse_register_map(text, source=str(path), _chain=_chain)


def parse_register_map(
    text: str, *, source: str = "<memory>", _chain: tuple[str, ...] = ()
) -> RegisterMap:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegisterMapError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise RegisterMapError(f"{source}: not valid TOML: nested too deeply") from None
    base = None
    tool = data.get("tool")
    if isinstance(tool, dict) and "extends" in tool:
        base = _base_map(tool["extends"], source, _chain)
    return _MapReader(source).build(data, base)


def _base_map(extends: Any, source: str, chain: tuple[str, ...]) -> RegisterMap:
    """The map an ``extends`` key names, loaded with its own bases (no cycles)."""
    if not isinstance(extends, str) or not extends:
        raise RegisterMapError(
            f"{source}: tool.extends: expected a model name or map file (got {extends!r})"
        )
    here = Path(source).parent if source != "<memory>" else None
    path = map_path(extends, relative_to=here)
    chain = (*chain, str(Path(source).resolve()))
    if str(path.resolve()) in chain:
        raise RegisterMapError(f"{source}: tool.extends: {extends!r} leads back here (a cycle)")
    return load_register_map(path, _chain=chain)


_TOOL_KEYS = {"model", "description", "unit", "read_across_gaps", "role", "extends"}
_ENTRY_KEYS = {
    "address", "count", "type", "scale", "unit", "range", "description", "codes", "bits",
    "no_reading",
}


class _MapReader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, got: Any = ...) -> RegisterMapError:
        shown = "missing" if got is ... else f"got {got!r}"
        return RegisterMapError(f"{self.source}: {key}: expected {expected} ({shown})")

    def build(self, data: dict[str, Any], base: RegisterMap | None = None) -> RegisterMap:
        """The map in ``data``; on top of ``base`` (its entries, alarms, unit, role) when it
        extends one: an entry of the same name replaces the base's (same table only)."""
        unknown = set(data) - {"tool", "alarms", *TABLES}
        if unknown:
            raise RegisterMapError(
                f"{self.source}: {sorted(unknown)[0]}: unknown table "
                f"(known: tool, alarms, {', '.join(TABLES)})"
            )
        tool = data.get("tool")
        if not isinstance(tool, dict):
            raise self.fail("tool", "a [tool] table with model = \"NAME\"", tool if tool else ...)
        model = tool.get("model")
        if not isinstance(model, str) or not model:
            raise self.fail("tool.model", "the tool model name (text)", tool.get("model", ...))
        for key in tool:
            if key not in _TOOL_KEYS:
                raise RegisterMapError(
                    f"{self.source}: tool.{key}: unknown key "
                    f"(known: {', '.join(sorted(_TOOL_KEYS))})"
                )
        unit = tool.get("unit", base.unit if base else None)
        bad_unit = isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 247
        if unit is not None and bad_unit:
            raise self.fail("tool.unit", "a Modbus unit id 0-247", unit)

        gaps = tool.get("read_across_gaps", base.read_across_gaps if base else False)
        if not isinstance(gaps, bool):
            raise self.fail("tool.read_across_gaps", "true or false", gaps)
        role = tool.get("role", base.role if base else "")
        if not isinstance(role, str):
            raise self.fail("tool.role", "the line role the model serves (oven, cleaner)", role)
        inherited: dict[str, Register] = dict(base.registers) if base else {}
        registers: dict[str, Register] = {}
        for table in TABLES:
            entries = data.get(table, {})
            if not isinstance(entries, dict):
                raise self.fail(table, f"[{table}.NAME] tables", entries)
            for name, entry in entries.items():
                if name in registers:
                    raise RegisterMapError(
                        f"{self.source}: {table}.{name}: name already used in "
                        f"{registers[name].table} (names must be unique across tables)"
                    )
                old = inherited.pop(name, None)
                if old is not None and old.table != table:
                    raise RegisterMapError(
                        f"{self.source}: {table}.{name}: {base.model} has {name} in "  # type: ignore[union-attr]
                        f"{old.table} (an extending map replaces an entry in its own table)"
                    )
                registers[name] = self.entry(table, name, entry)
        registers = inherited | registers
        if not registers:
            raise RegisterMapError(f"{self.source}: no registers (expected [holding.NAME] etc.)")
        self.check_overlaps(registers.values())
        return RegisterMap(
            model=model,
            registers=registers,
            alarms=(dict(base.alarms) if base else {}) | self.alarms(data.get("alarms", {})),
            description=str(tool.get("description", "")),
            unit=unit,
            read_across_gaps=gaps,
            source=self.source,
            role=role,
            extends=base.model if base else "",
        )

    def entry(self, table: str, name: str, entry: Any) -> Register:
        key = f"{table}.{name}"
        if not isinstance(entry, dict):
            raise self.fail(key, "a table with address, type, ...", entry)
        for k in entry:
            if k not in _ENTRY_KEYS:
                raise RegisterMapError(
                    f"{self.source}: {key}.{k}: unknown key "
                    f"(known: {', '.join(sorted(_ENTRY_KEYS))})"
                )

        def integer(
            k: str, expected: str, default: Any = ..., low: int = 0, high: int = U16_MAX
        ) -> Any:
            if k not in entry:
                if default is ...:
                    raise self.fail(f"{key}.{k}", expected)
                return default
            v = entry[k]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise self.fail(f"{key}.{k}", expected, v)
            return v

        address = integer("address", "a protocol (0-based) address 0-65535")
        count = integer("count", "a register count 1-65536", 1, 1, 65536)
        if address + count > U16_MAX + 1:
            raise self.fail(f"{key}.count", "a run ending at or before address 65535", count)
        default_type = "bool" if table in BIT_TABLES else "u16"
        kind = entry.get("type", default_type)
        allowed = ("bool",) if table in BIT_TABLES else tuple(t for t in TYPES if t != "bool")
        if kind not in allowed:
            raise self.fail(f"{key}.type", " | ".join(allowed), kind)
        width = WORDS_PER_VALUE.get(kind, 1)
        if count % width:
            raise self.fail(f"{key}.count", f"a multiple of {width} for type {kind}", count)
        scale = entry.get("scale", 1)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise self.fail(f"{key}.scale", "a number > 0 (0.1 for tenths)", scale)
        range_ = entry.get("range")
        if range_ is not None:
            if (
                not isinstance(range_, list) or len(range_) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in range_)
                or range_[0] > range_[1]
            ):
                raise self.fail(f"{key}.range", "[LOW, HIGH] in raw register units", range_)
            range_ = (range_[0], range_[1])
        codes = self.int_table(f"{key}.codes", entry.get("codes", {}), "CODE_NAME = number")
        bits = self.int_table(f"{key}.bits", entry.get("bits", {}), "FLAG_NAME = bit number 0-15")
        for text_key in ("unit", "description"):
            if not isinstance(entry.get(text_key, ""), str):
                raise self.fail(f"{key}.{text_key}", "text", entry[text_key])
        return Register(
            name=name, table=table, address=address, count=count, type=kind,
            scale=scale, unit=entry.get("unit", ""), range=range_,
            description=entry.get("description", ""), codes=codes, bits=bits,
            no_reading=integer("no_reading", "a raw word 0-65535 meaning no reading", None),
        )

    def int_table(self, key: str, value: Any, expected: str) -> dict[str, int]:
        if not isinstance(value, dict):
            raise self.fail(key, expected, value)
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"{key}.{k}", expected, v)
        return dict(value)

    def alarms(self, value: Any) -> dict[int, str]:
        if not isinstance(value, dict):
            raise self.fail("alarms", "CODE = \"TEXT\" pairs", value)
        out = {}
        for k, v in value.items():
            if not k.isdigit() or not isinstance(v, str):
                raise self.fail(f"alarms.{k}", "a numeric alarm code = \"TEXT\"", v)
            out[int(k)] = v
        return out

    def check_overlaps(self, registers: Iterable[Register]) -> None:
        by_table: dict[str, list[Register]] = {}
        for reg in registers:
            by_table.setdefault(reg.table, []).append(reg)
        for table, regs in by_table.items():
            regs.sort(key=lambda r: r.address)
            for a, b in zip(regs, regs[1:], strict=False):
                if b.address < a.end:
                    raise RegisterMapError(
                        f"{self.source}: {table}.{b.name}: address {b.address} overlaps "
                        f"{table}.{a.name} ({a.address}..{a.end - 1})"
                    )
