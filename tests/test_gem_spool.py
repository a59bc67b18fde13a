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


def test_overwrite_drops_the_oldest_and_keep_refuses_the_newest(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine)
        for n in range(5):
            db.spool(5, 1, bytes([n]), f"ALID {n}", limit=3, overwrite=True)
        assert [s.body[0] for s in db.spooled()] == [2, 3, 4]
        assert db.spool_state() == {"total": 5, "full": True, "lost": 0}
        db.purge()
        assert db.spool_state() == {"total": 0, "full": False, "lost": 0}
        for n in range(5):
            stored = db.spool(5, 1, bytes([n]), f"ALID {n}", limit=3, overwrite=False)
            assert stored is (n < 3)
        assert [s.body[0] for s in db.spooled()] == [0, 1, 2]
        assert db.spool_state() == {"total": 5, "full": True, "lost": 2}
        for spooled in db.spooled():
            db.delivered(spooled.id)
        assert db.spool_count() == 0 and db.spool_state()["total"] == 0


def test_take_hands_a_request_out_once(tmp_path):
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    with Store(f"sqlite:///{tmp_path / 'gem.db'}") as store:
        db = GemDatabase(store.engine, now=lambda: stamp)
        db.save("operator_request", {"action": "online"})
        assert db.take("operator_request") == {"action": "online"}
        assert db.take("operator_request") is None
        assert db.now() == stamp
