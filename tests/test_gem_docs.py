"""docs/gem.md's id tables are the code's (`bumpline gem tables --out docs/gem.md`)."""

from pathlib import Path

import pytest

from controller.cli import main
from controller.gem import ids
from controller.gem.doc_tables import BEGIN, END, STANDARD_LINE, replace_tables, tables_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "gem.md"


def test_the_doc_tables_are_current():
    text = DOC.read_text(encoding="utf-8")
    assert replace_tables(text, tables_markdown()) == text, (
        "docs/gem.md is out of date: run 'bumpline gem tables --out docs/gem.md'")


def test_every_id_is_in_the_tables_once():
    tables = tables_markdown()
    for number in [v.vid for v in ids.LINE_SVS + ids.DVS + ids.ECS] + [
            e.ceid for e in ids.EVENTS]:
        assert f"\n| {number} |" in tables
    for command in ids.COMMANDS:
        assert f"\n| {command.rcmd} |" in tables
    all_ids = [v.vid for v in ids.LINE_SVS + ids.DVS + ids.ECS] + [
        v.vid for t in ("printer-1", "oven-2") for v in ids.tool_svs(t)]
    assert len(all_ids) == len(set(all_ids))  # no variable id used twice


def test_the_command_rewrites_only_the_tables(tmp_path, capsys):
    doc = tmp_path / "gem.md"
    doc.write_text(f"# title\n{BEGIN}\nSTALE TABLE\n{END}\ntail\n", encoding="utf-8")
    assert main(["gem", "tables", "--out", str(doc)]) == 0
    written = doc.read_text(encoding="utf-8")
    assert written.startswith("# title\n") and written.endswith(f"{END}\ntail\n")
    assert "STALE TABLE" not in written and "| 1 | CONTROLSTATE |" in written
    doc.write_text("no markers\n", encoding="utf-8")
    assert main(["gem", "tables", "--out", str(doc)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no" in err


@pytest.mark.parametrize("tool", ["printer-0", "oven", "furnace-1", "oven-10"])
def test_names_outside_the_role_unit_scheme_get_no_ids(tool):
    assert ids.tool_svs(tool) == () and ids.tool_alarms(tool) == ()
    assert ids.alid_for(tool, 510) is None and ids.alid_for(tool, "link_lost") is None


def test_each_alarms_set_and_clear_ceid_is_in_the_tables_and_unique():
    tables = tables_markdown()
    for alarm in ids.alarms_of(STANDARD_LINE):
        set_event, clear_event = ids.alarm_events(alarm)
        assert f"\n| {alarm.alid} | {alarm.text} |" in tables
        assert f"| {set_event.ceid} | {clear_event.ceid} |\n" in tables
    # the largest line the numbering allows: no CEID twice; ALIDs and the fixed CEIDs
    # stay below the alarm event blocks
    tools = [f"{role}-{unit}" for role in ids.ROLES for unit in range(1, 10)]
    ceids = [e.ceid for e in ids.events_of(tools)]
    assert len(ceids) == len(set(ceids))
    assert all(a.alid < ids.CE_ALARM_SET_BASE for a in ids.alarms_of(tools))
    assert ids.alid_for("plater-9", 999) < ids.CE_ALARM_SET_BASE
    # each tool's link lost is its own alarm (code 0), the line's interlock is no tool's
    assert ids.alid_for("plater-9", "link_lost") == 509_000
    assert ids.alid_for("plater-1", "interlock") == ids.alid_for(None, "interlock") == 2
    assert all(e.ceid < ids.CE_ALARM_SET_BASE for e in ids.EVENTS)
