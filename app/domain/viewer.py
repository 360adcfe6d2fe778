"""The caller of a protected endpoint, and the one rule every such endpoint keeps.

A valid token names an account, but does not prove that the account still exists, nor
that the token still counts: the account may have been deleted since the token was
issued, its password changed (or "log out everywhere" used), or this token logged out.
Every protected endpoint gets a `Viewer` (app/api/deps.py) and reads through it, and
`Viewer.fetch` runs only statements that return nothing unless the token still counts
(`Prepared.proves_viewer`: the account exists, at the token's generation, and the token
is not revoked). On an empty result it asks once more, so a revoked token gets 401,
never another account's data or a misleading 404. Nothing to remember per endpoint: the
statement carries the check, the viewer raises the error.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from app.db import statements
from app.db.backends import Database, Prepared, Row
from app.db.errors import DatabaseConflict
from app.domain.errors import NotAuthenticated


class Viewer:
    """A verified token (user id, token generation, token id, expiry), with the database its statements run on."""

    __slots__ = ("_identity", "database", "expires_at", "generation", "id", "jti")

    def __init__(self, user_id: int, database: Database, *, generation: int, jti: str, expires_at: int) -> None:
        self.id = user_id
        self.generation = generation
        self.jti = jti
        self.expires_at = expires_at
        self.database = database
        self._identity = {"viewer_id": user_id, "viewer_generation": generation, "viewer_jti": jti}

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """Run a statement as this viewer (the token's parameters are bound here); 401 when it no longer counts.

        Rows mean the token counts (the statement proves it). No rows mean either
        "nothing matched" or "the token no longer counts": the second is told apart here.
        A conflict (e.g. a foreign key to an account deleted meanwhile) is told apart the
        same way.
        """
        if not prepared.proves_viewer:
            raise TypeError("Viewer.fetch runs only statements that prove the viewer's account (proves_viewer)")
        arguments = {**params, **self._identity} if params else self._identity
        try:
            rows = await self.database.fetch(prepared, arguments)
        except DatabaseConflict:
            await self.account()
            raise
        if not rows:
            await self.account()
        return rows

    async def account(self) -> Row:
        """The viewer's account (id, email, created_at, phone_number); 401 when the token no longer counts."""
        rows = await self.database.fetch(statements.VIEWER_ACCOUNT, self._identity)
        if not rows:
            raise NotAuthenticated()
        return rows[0]
