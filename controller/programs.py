"""The recipes a lot can run: the library's, and process programs the factory host
downloaded.

A program downloaded by S7F3 (controller/gem/programs_capability.py) is validated and
stored in ``gem_process_programs``, versioned and never overwritten. ``StoredRecipes``
is the recipe loader ``LineController(recipes=...)`` and the host's START use, so such
a program can be run like a shipped recipe:

* a shipped recipe's name always means the shipped recipe (the host cannot replace one);
* else the newest stored, undeleted version of that name, checked by the
  metallurgical validator again when loaded (the rules or the alloy data may have
  changed since it was stored);
* else a recipe file by path, as ``bumpline run --recipe FILE`` always allowed.

A lot records its recipe's hash when it is created; if the host stores a newer version
while the lot runs, the controller refuses to continue it with the other recipe
(``LineController._recipe_for``), exactly as with an edited recipe file.
"""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from controller.models import GemProcessProgram
from sequences.recipes.recipe import Recipe, parse_recipe, shipped_recipe_paths
from sequences.recipes.validate import check, load_valid_recipe


def newest_program(session: Session, ppid: str) -> GemProcessProgram | None:
    """The newest stored version of a process program that is not deleted."""
    return session.scalars(
        select(GemProcessProgram)
        .where(GemProcessProgram.ppid == ppid, GemProcessProgram.deleted_at.is_(None))
        .order_by(GemProcessProgram.version.desc()).limit(1)
    ).first()


class StoredRecipes:
    """``name -> Recipe``: a shipped recipe, a stored process program, or a file."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, name: str) -> Recipe:
        if name not in shipped_recipe_paths():
            with Session(self.engine) as session:
                program = newest_program(session, name)
            if program is not None:
                return check(parse_recipe(
                    program.body, source=f"process program {name} v{program.version}"))
        return load_valid_recipe(name)
