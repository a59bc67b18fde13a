"""GEM persistence in the controller's database: settings, and the spool's order,
limit and overflow policy, across reopening the database."""

from datetime import UTC, datetime

from controller.gem.spool import GemDatabase
from controller.store import Store


def test_settings_and_the_spool_survive_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'gem.db'}"
    with Store(url) as store:
        db = GemDatabase(store.engine)
        db.save("control", {"state": 5, "remote": True})
        db.save("control", {"state": 4, "remote": False})
        for n in (1, 2, 3):
            assert db.spool(6, 11, bytes([n]), f"CEID {n}", limit=10, overwrite=False)
    with Store(url) as store:
        db = GemDatabase(store.engine)
        assert db.load("control") == {"state": 4, "remote": False}
        assert db.load("nothing", "default") == "default"
        assert [s.body for s in db.spooled()] == [b"\x01", b"\x02", b"\x03"]
        assert [s.what for s in db.spooled(2)] == ["CEID 1", "CEID 2"]


def counts(db: GemDatabase) -> dict:
    state = db.spool_state()
    return {key: state[key] for key in ("total", "full", "lost", "active")}


def test_overwrite_drops_the_oldest_and_keep_refuses_the_newest(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine)
        for n in range(5):
            db.spool(5, 1, bytes([n]), f"ALID {n}", limit=3, overwrite=True)
        assert [s.body[0] for s in db.spooled()] == [2, 3, 4]
        assert counts(db) == {"total": 5, "full": True, "lost": 0, "active": True}
        db.purge()
        assert counts(db) == {"total": 0, "full": False, "lost": 0, "active": False}
        for n in range(5):
            stored = db.spool(5, 1, bytes([n]), f"ALID {n}", limit=3, overwrite=False)
            assert stored is (n < 3)
        assert [s.body[0] for s in db.spooled()] == [0, 1, 2]
        assert counts(db) == {"total": 5, "full": True, "lost": 2, "active": True}
        emptied = [db.delivered(spooled.id) for spooled in db.spooled()]
        assert emptied == [False, False, True]  # the last one empties the spool
        assert db.spool_count() == 0
        assert counts(db) == {"total": 0, "full": False, "lost": 0, "active": False}


def test_the_spool_state_keeps_when_it_was_activated_and_became_full(tmp_path):
    clock = [datetime(2026, 12, 1, 8, 0, tzinfo=UTC)]
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine, now=lambda: clock[0])
        state = db.spool_state()
        assert (state["active"], state["started_at"], state["filled_at"]) == (False, None, None)
        db.activate_spool()
        clock[0] = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
        for n in range(3):
            db.spool(6, 11, bytes([n]), f"CEID {n}", limit=2, overwrite=True)
        clock[0] = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        db.spool(6, 11, b"\x09", "CEID 9", limit=2, overwrite=True)  # already full
        state = db.spool_state()
        assert state["active"] and state["full"]
        assert state["started_at"] == "2026-12-01T08:00:00+00:00"
        assert state["filled_at"] == "2026-12-01T08:05:00+00:00"  # when it became full
        db.purge()
        state = db.spool_state()  # the times of the last activation and fill stay
        assert not state["active"] and state["started_at"] == "2026-12-01T08:00:00+00:00"
        assert state["filled_at"] == "2026-12-01T08:05:00+00:00"


def test_a_spool_kept_before_the_state_model_reads_as_active(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine)
        db.spool(6, 11, b"\x01", "CEID 1", limit=5, overwrite=False)
        db.save("spool", {"total": 1, "full": False, "lost": 0})  # as an older version wrote
        assert db.spool_state()["active"] is True
        db.save("spool", {"total": 0, "full": False, "lost": 0})
        db.purge()
        assert db.spool_state()["active"] is False


def test_take_hands_a_request_out_once(tmp_path):
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine, now=lambda: stamp)
        db.save("operator_request", {"action": "online"})
        assert db.take("operator_request") == {"action": "online"}
        assert db.take("operator_request") is None
        assert db.now() == stamp


def test_each_line_of_a_shared_database_keeps_its_own_settings_and_spool(db_url):
    """Lines on one database each have a host link: one host's control switch, reports and
    spooled events are its line's alone (they were shared: switching bay-A offline switched
    bay-B, and bay-A's spooled events went to whichever host connected first)."""
    with Store(db_url, line_id="bay-A") as store:
        a = GemDatabase(store.engine, line_id="bay-A")
        b = GemDatabase(store.engine, line_id="bay-B")
        a.save("control", {"state": 5, "remote": True})
        b.save("control", {"state": 1, "remote": False})
        assert a.load("control") == {"state": 5, "remote": True}
        assert b.load("control") == {"state": 1, "remote": False}
        assert GemDatabase(store.engine).load("control") is None  # a store of no line
        for n in (1, 2):
            a.spool(6, 11, bytes([n]), f"CEID {n}", limit=2, overwrite=True)
        b.spool(6, 11, b"\x09", "CEID 9", limit=2, overwrite=True)
        a.spool(6, 11, b"\x03", "CEID 3", limit=2, overwrite=True)  # full: drops A's oldest
        assert [s.body for s in a.spooled()] == [b"\x02", b"\x03"]
        assert [s.body for s in b.spooled()] == [b"\x09"]  # B's not counted, not dropped
        assert (a.spool_count(), b.spool_count()) == (2, 1)
        assert (counts(a)["full"], counts(b)["full"]) == (True, False)
        assert b.delivered(a.spooled()[0].id) is False  # not B's to take off
        assert a.spool_count() == 2
        assert b.delivered(b.spooled()[0].id) is True  # B's spool emptied, A's kept
        assert (a.spool_count(), counts(b)["active"]) == (2, False)
        assert a.purge() == 2
        assert a.take("control") == {"state": 5, "remote": True}
        assert b.load("control") == {"state": 1, "remote": False}
