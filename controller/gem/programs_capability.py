"""Process program management: recipes are process programs (PPID = recipe name).

* S7F1/S7F2 load inquire, S7F3/S7F4 download, S7F5/S7F6 upload, S7F17/S7F18
  delete, S7F19/S7F20 list.
* A download is parsed and run through the metallurgical validator
  (sequences/recipes/validate.py) exactly as ``bumpline recipe validate`` does. A refused
  program is answered with ACKC7 1 (permission not granted; E5's 6 would say "accepted,
  performed later"), 2 when too long, 5 when a binary body is not UTF-8 text, and the
  reasons are sent to the host: an S10F1 terminal message and the PPREFUSED event (REASON).
* Stored programs are versioned by the recipe's own ``version``: the same name and
  version with other text is refused, never silently overwritten; deleting marks a
  program deleted and keeps its text. Shipped recipes are read-only programs.
* A stored program can be run: START and the controller load recipes through
  ``controller.programs.StoredRecipes`` (the newest undeleted version). So that a
  lot never meets another recipe than it was started with, a program with
  unfinished lots on it gets no new version and is not deleted until they finish.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import A, B, Fmt, L, ascii_text
from controller.models import GemProcessProgram
from controller.programs import newest_program
from sequences.errors import RecipeError
from sequences.recipes.recipe import NAME_PATTERN, parse_recipe_problems, shipped_recipe_paths
from sequences.recipes.validate import validate

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.programs")

MAX_PP_BYTES = 256 * 1024  # a recipe is a few kB of TOML
# E5 ACKC7: 0 accepted, 1 permission not granted, 2 length error, 3 matrix overflow,
# 4 PPID not found, 5 mode unsupported, 6 performed later (an acceptance: never a refusal)
ACKC7_ACCEPTED = 0
ACKC7_NOT_GRANTED = 1
ACKC7_LENGTH = 2
ACKC7_NOT_FOUND = 4
ACKC7_MODE_UNSUPPORTED = 5


class ProgramsCapability:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(7, 1): self._s7f1, (7, 3): self._s7f3, (7, 5): self._s7f5,
                (7, 17): self._s7f17, (7, 19): self._s7f19}

    # -- reading

    def stored(self, ppid: str) -> GemProcessProgram | None:
        with self.eq.db.read_session() as session:
            return newest_program(session, ppid)

    def body(self, ppid: str) -> str | None:
        """The newest stored version's text, else the shipped recipe's, else None."""
        program = self.stored(ppid)
        if program is not None:
            return program.body
        path = shipped_recipe_paths().get(ppid)
        return path.read_text(encoding="utf-8") if path is not None else None

    def names(self) -> list[str]:
        with self.eq.db.read_session() as session:
            stored = set(session.scalars(
                select(GemProcessProgram.ppid).where(GemProcessProgram.deleted_at.is_(None))))
        return sorted(stored | set(shipped_recipe_paths()))

    # -- handlers

    async def _s7f1(self, message: Message) -> Reply:
        ppid_item, length_item = message.item.items
        if not NAME_PATTERN.match(ppid_item.text):
            return 2, B(3)  # PPGNT 3: invalid PPID
        if length_item.number > MAX_PP_BYTES:
            return 2, B(2)  # PPGNT 2: no space
        return 2, B(0)

    async def _s7f3(self, message: Message) -> Reply:
        ppid_item, body_item = message.item.items
        ppid = ppid_item.text
        if body_item.fmt is Fmt.B:  # binary PPBODY: the file's UTF-8 bytes
            try:
                text = bytes(body_item.value).decode("utf-8")
            except UnicodeDecodeError:
                return self._refuse(ppid, ACKC7_MODE_UNSUPPORTED,
                                    "not UTF-8 text (a recipe is TOML)")
        else:
            text = body_item.text
        raw = text.encode("utf-8")
        if len(raw) > MAX_PP_BYTES:
            return self._refuse(ppid, ACKC7_LENGTH, f"longer than {MAX_PP_BYTES} bytes")
        try:
            recipe, problems = parse_recipe_problems(text, source=ppid)
            if recipe is not None:
                problems += validate(recipe)
        except RecipeError as exc:
            return self._refuse(ppid, ACKC7_NOT_GRANTED, str(exc).splitlines()[0])
        if recipe is None or problems:  # (no recipe comes with the problems that broke it)
            return self._refuse(ppid, ACKC7_NOT_GRANTED, "; ".join(str(p) for p in problems))
        if recipe.name != ppid:
            return self._refuse(ppid, ACKC7_NOT_GRANTED,
                                f"the recipe inside is named {recipe.name!r}, not {ppid!r}")
        digest = hashlib.sha256(raw).hexdigest()
        clash = self._version_clash(ppid, recipe.version, digest)
        if clash:
            return self._refuse(ppid, ACKC7_NOT_GRANTED, clash)
        with self.eq.db.write_session() as session, session.begin():
            row = session.scalars(select(GemProcessProgram).where(
                GemProcessProgram.ppid == ppid,
                GemProcessProgram.version == recipe.version)).first()
            new = row is None or row.deleted_at is not None
            if row is None:
                session.add(GemProcessProgram(
                    ppid=ppid, version=recipe.version, body=text, body_hash=digest,
                    stored_at=self.eq.db.now(), stored_by="host"))
            elif row.deleted_at is not None:  # the same text again: deleted no more
                row.deleted_at = None
        if new:  # the same program again changes nothing and reports nothing
            self.eq.commands.audit("gem.pp_download",
                                   f"{ppid} v{recipe.version} ({digest[:12]})")
            self.eq.emit(ids.CE_PP_CHANGED, {ids.DV_PPID: A(ppid)})
        return 4, B(ACKC7_ACCEPTED)

    def _version_clash(self, ppid: str, version: int, digest: str) -> str | None:
        shipped = shipped_recipe_paths().get(ppid)
        if shipped is not None:
            return f"{ppid} is a shipped recipe: it cannot be replaced from the host"
        with self.eq.db.read_session() as session:
            same = session.scalars(select(GemProcessProgram).where(
                GemProcessProgram.ppid == ppid, GemProcessProgram.version == version)).first()
        if same is not None and same.body_hash != digest:
            return (f"{ppid} version {version} is already stored with other text; "
                    f"a changed program needs a new version")
        if same is None or same.deleted_at is not None:
            return self._in_use(ppid, "a new version")
        return None

    def _in_use(self, ppid: str, change: str) -> str | None:
        """Lots still to run on ``ppid`` would meet another recipe than they were
        started with (the controller refuses to continue them): no change meanwhile."""
        lots = self.eq.commands.unfinished_lots(ppid)
        if not lots:
            return None
        return (f"{ppid}: lot(s) {', '.join(lots)} still to run on it; {change} must "
                "wait until they have finished")

    def _refuse(self, ppid: str, ackc7: int, reason: str) -> Reply:
        log.warning("process program %s refused: %s", ppid, reason)
        self.eq.commands.audit("gem.pp_refused", f"{ppid}: {reason}")
        self.eq.terminal.to_host(f"PP {ppid} refused: {reason}")
        self.eq.emit(ids.CE_PP_REFUSED,
                     {ids.DV_PPID: A(ppid), ids.DV_REASON: A(ascii_text(reason))})
        return 4, B(ackc7)

    async def _s7f5(self, message: Message) -> Reply:
        ppid = message.item.text
        body = self.body(ppid)
        if body is None:
            return 6, L()  # E5: zero-length list when the program does not exist
        if body.isascii():
            return 6, L(A(ppid), A(body))
        return 6, L(A(ppid), B(*body.encode("utf-8")))  # the file's bytes, never altered

    async def _s7f17(self, message: Message) -> Reply:
        ppids = [item.text for item in message.body.items] if message.body else []
        shipped = shipped_recipe_paths()
        with self.eq.db.write_session() as session, session.begin():
            rows = session.scalars(select(GemProcessProgram).where(
                GemProcessProgram.deleted_at.is_(None))).all()
            targets = ppids or sorted({r.ppid for r in rows})
            if any(p in shipped for p in targets):
                return 18, B(ACKC7_NOT_GRANTED)  # shipped recipes are not the host's to delete
            present = {r.ppid for r in rows}
            if any(p not in present for p in targets):
                return 18, B(ACKC7_NOT_FOUND)
            if any(self._in_use(p, "deleting it") for p in targets):
                return 18, B(ACKC7_NOT_GRANTED)
            for row in rows:
                if row.ppid in targets:
                    row.deleted_at = self.eq.db.now()
        self.eq.commands.audit("gem.pp_delete", ", ".join(targets))
        return 18, B(ACKC7_ACCEPTED)

    async def _s7f19(self, message: Message) -> Reply:
        return 20, L(*(A(name) for name in self.names()))

