"""The id tables of docs/gem.md, written from controller/gem/ids.py (``bumpline gem tables``).

The doc keeps the tables between two marker lines; ``replace_tables`` rewrites
only that part, and tests/test_gem_docs.py fails when the doc is not current.
"""

from __future__ import annotations

from controller.gem import ids

BEGIN = "<!-- gem-tables:begin (bumpline gem tables --out docs/gem.md) -->"
END = "<!-- gem-tables:end -->"
STANDARD_LINE = ("printer-1", "placer-1", "oven-1", "cleaner-1")
DOC_LINE = STANDARD_LINE + ("plater-1",)  # the tables show a plater's ids too


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out + [""]


def _roles() -> str:
    return ", ".join(f"{role} {number}" for number, role in enumerate(ids.ROLES, 1))


def tables_markdown(tools: tuple[str, ...] = DOC_LINE) -> str:
    lines = [BEGIN, "", "### Status variables (SVID)", "",
             f"Per tool: SVID = 1000 + 100 × role ({_roles()}) "
             "+ 10 × unit + offset, for a tool named `<role>-<unit>` (unit 1-9); shown for "
             f"{', '.join(tools)}.", ""]
    svs = list(ids.LINE_SVS) + [v for t in tools for v in ids.tool_svs(t)]
    lines += _table(["SVID", "name", "format", "units", "meaning"],
                    [[v.vid, v.name, v.fmt.name, v.units, v.description] for v in svs])
    lines += ["### Data variables (DVID, valid inside the events that carry them)", ""]
    lines += _table(["DVID", "name", "format", "meaning"],
                    [[v.vid, v.name, v.fmt.name, v.description] for v in ids.DVS])
    lines += ["### Equipment constants (ECID)", ""]
    lines += _table(["ECID", "name", "format", "units", "min", "max", "default", "meaning"],
                    [[v.vid, v.name, v.fmt.name, v.units, _s(v.minimum), _s(v.maximum),
                      _s(v.default), v.description] for v in ids.ECS])
    lines += ["### Collection events (CEID)", ""]
    names = {v.vid: v.name for v in ids.DVS + ids.LINE_SVS}  # an event may name SVs too
    lines += _table(["CEID", "name", "when", "data variables"],
                    [[e.ceid, e.name, e.description, ", ".join(names[d] for d in e.dvids)]
                     for e in ids.EVENTS])
    lines += ["Besides these, every alarm in the table below has its own two collection "
              f"events (E30): set CEID = {ids.CE_ALARM_SET_BASE} + ALID, named "
              f"ALARM<ALID>SET, and clear CEID = {ids.CE_ALARM_CLEARED_BASE} + ALID, named "
              "ALARM<ALID>CLEARED, both with the data variables "
              f"{', '.join(names[d] for d in ids.ALARM_EVENT_DVS)}.", ""]
    lines += ["### Alarms (ALID)", "",
              "Each ALID is one alarm condition: set once, cleared once. "
              "Tool alarms: ALID = 100000 × role + 1000 × unit + the tool's alarm code "
              "(../shared/specs/; code 0 is the tool's link lost); a code 1-999 not listed "
              "still gets its ALID (but no set or clear CEID of its own). Shown for "
              f"{', '.join(tools)}; a cleaner's 650 and 660 are the FC-2's, and the "
              "plater's warning 741 is no alarm. Line alarms are below 100: "
              f"{ids.ALID_TOOL_LINK_LOST} is set while at least one tool's link is lost, "
              f"{ids.ALID_INTERLOCK} while at least one wafer is held at an interlock, "
              f"{ids.ALID_UNNUMBERED} while at least one alarm without an ALID of its own "
              "is set (a tool named outside the `<role>-<unit>` scheme, or a code outside "
              "1-999); each is set with the first and cleared with the last. "
              "ALCD category (E5): 2 equipment safety, 7 attention flags.", ""]
    rows = []
    for alarm in ids.alarms_of(tools):
        set_event, clear_event = ids.alarm_events(alarm)
        rows.append([alarm.alid, alarm.text, alarm.tool or "line", alarm.category,
                     set_event.ceid, clear_event.ceid])
    lines += _table(["ALID", "ALTX", "tool", "ALCD category", "set CEID", "clear CEID"], rows)
    lines += ["### Remote commands (RCMD, S2F41 / S2F49)", ""]
    lines += _table(["RCMD", "parameters (CPNAME: value)", "does"],
                    [[c.rcmd, "; ".join(f"{n}: {w}" for n, w in c.parameters), c.description]
                     for c in ids.COMMANDS])
    return "\n".join(lines + [END])


def _s(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def replace_tables(document: str, tables: str) -> str:
    """The document with the text between the markers replaced by ``tables``."""
    try:
        head, rest = document.split(BEGIN, 1)
        _old, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the document has no '{BEGIN}' ... '{END}' section") from None
    return head + tables + tail
