"""Stored process programs run like shipped recipes (controller/programs.py): the newest
undeleted version, validated again when loaded; a shipped name is always the shipped
recipe; an unknown name is the library's one-line error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from controller.gem.commands import CommandRefused, StoreLineCommands
from controller.gem.secs2 import A, B, L
from controller.models import GemProcessProgram
from controller.programs import StoredRecipes
from controller.store import Store
from sequences.errors import RecipeError
from sequences.recipes.recipe import shipped_recipe_paths
from tests.gem_host import GemLine

SHIPPED = "ballmount-sac305"


def program(name: str, version: int) -> str:
    text = shipped_recipe_paths()[SHIPPED].read_text(encoding="utf-8")
    text = text.replace(f'name = "{SHIPPED}"', f'name = "{name}"')
    text = text.replace("version = 1", f"version = {version}", 1)
    assert f"version = {version}" in text
    return text


def store_program(store: Store, name: str, version: int, body: str, *,
                  deleted: bool = False) -> None:
    now = datetime.now(UTC)
    with Session(store.engine) as session, session.begin():
        session.add(GemProcessProgram(ppid=name, version=version, body=body, body_hash="x",
                                      stored_at=now, stored_by="host",
                                      deleted_at=now if deleted else None))


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        yield store


def test_the_newest_stored_version_is_loaded_and_started(store):
    store_program(store, "ball-v", 1, program("ball-v", 1))
    store_program(store, "ball-v", 2, program("ball-v", 2))
    recipes = StoredRecipes(store.engine)
    recipe = recipes("ball-v")
    assert (recipe.name, recipe.version) == ("ball-v", 2)
    assert recipes(SHIPPED).name == SHIPPED  # the library's, as before
    StoreLineCommands(store).start_lot("PP1", "ball-v", [1, 2], 5)
    lot = store.get_lot("PP1")
    assert (lot.recipe_name, lot.recipe_hash) == ("ball-v", recipe.hash)


def test_deleted_unknown_and_invalid_programs_are_refused(store):
    store_program(store, "gone", 1, program("gone", 1), deleted=True)
    recipes = StoredRecipes(store.engine)
    with pytest.raises(RecipeError, match="no recipe named 'gone'"):
        recipes("gone")
    # stored before a rule it breaks existed: checked again when it is to run
    rebump = shipped_recipe_paths()["rebump-hipb-snpb"].read_text(encoding="utf-8")
    hot = rebump.replace('name = "rebump-hipb-snpb"', 'name = "too-hot"').replace(
        "peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]")  # remelts the first bump
    assert "300.0" in hot
    store_program(store, "too-hot", 1, hot)
    with pytest.raises(RecipeError, match="process program too-hot v1"):
        recipes("too-hot")
    with pytest.raises(CommandRefused, match="too-hot") as refused:
        StoreLineCommands(store).start_lot("PP2", "too-hot", [1], 5)
    assert refused.value.parameter == "RECIPE"


async def test_a_program_with_lots_still_to_run_keeps_its_version(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    await line.start()
    try:
        host = await line.remote_host()

        async def download(version: int) -> int:
            body = B(*program("ball-x", version).encode("utf-8"))
            return (await host.request(7, 3, L(A("ball-x"), body))).body.scalar

        assert await download(1) == 0
        start = L(A("START"), L(L(A("LOTID"), A("X1")), L(A("RECIPE"), A("ball-x")),
                                L(A("SLOTS"), A("1"))))
        assert (await host.request(2, 41, start)).body == L(B(4), L())
        assert await download(1) == 0  # the same program again changes nothing
        assert await download(2) == 1  # X1 would meet another recipe than it was started with
        notice = await host.primary(10, 1)
        assert "lot(s) X1 still to run on it" in notice.body.items[1].text
        assert (await host.request(7, 17, L(A("ball-x")))).body == B(1)
        line.store.abort_lot("X1", user="ann", reason="not needed")
        assert await download(2) == 0
        assert StoredRecipes(line.store.engine)("ball-x").version == 2
        assert (await host.request(7, 17, L(A("ball-x")))).body == B(0)
        await host.close()
    finally:
        await line.close()
