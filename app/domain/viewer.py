"""The caller of a protected endpoint, and the one rule every such endpoint keeps.

A valid token names an account, but does not prove that the account still exists: it
may have been deleted since the token was issued. Every protected endpoint gets a
`Viewer` (app/api/deps.py) and reads through it, and `Viewer.fetch` runs only statements
that return nothing unless the account exists (`Prepared.proves_viewer`). On an empty
result it asks once more whether the account exists, so a deleted account's token gets
401, never another account's data or a misleading 404. Nothing to remember per endpoint:
the statement carries the check, the viewer raises the error.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from app.db import statements
from app.db.backends import Database, Prepared, Row
from app.db.errors import DatabaseConflict
from app.domain.errors import NotAuthenticated


class Viewer:
    """A verified token's user id, with the database its statements run on."""

    __slots__ = ("database", "id")

    def __init__(self, user_id: int, database: Database) -> None:
        self.id = user_id
        self.database = database

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """Run a statement as this viewer (`viewer_id` is bound here); 401 when the account is gone.

        Rows mean the account exists (the statement proves it). No rows mean either
        "nothing matched" or "no account": the second is told apart here. A conflict
        (e.g. a foreign key to an account deleted meanwhile) is told apart the same way.
        """
        if not prepared.proves_viewer:
            raise TypeError("Viewer.fetch runs only statements that prove the viewer's account (proves_viewer)")
        arguments = {**params, "viewer_id": self.id} if params else {"viewer_id": self.id}
        try:
            rows = await self.database.fetch(prepared, arguments)
        except DatabaseConflict:
            await self.account()
            raise
        if not rows:
            await self.account()
        return rows

    async def account(self) -> Row:
        """The viewer's account (id, email, created_at, phone_number); 401 when it no longer exists."""
        rows = await self.database.fetch(statements.VIEWER_ACCOUNT, {"viewer_id": self.id})
        if not rows:
            raise NotAuthenticated()
        return rows[0]
