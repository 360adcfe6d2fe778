"""Accounts: registering, and checking a password at login.

Hashing is deliberately slow (tens of milliseconds), so it runs in a worker thread,
off the event loop: inside an `async def` it stalled every other request.
"""

from anyio.to_thread import run_sync

from app.db import statements
from app.db.backends import Database, Row
from app.domain.errors import Conflict
from app.security import Passwords


async def register(
    database: Database, passwords: Passwords, *, email: str, password: str, phone_number: str | None
) -> Row:
    """The new account (id, email, created_at, phone_number); 409 when the email is taken, ignoring case."""
    password_hash = await run_sync(passwords.hash, password)
    rows = await database.fetch(
        statements.INSERT_USER, {"email": email, "password": password_hash, "phone_number": phone_number}
    )
    if not rows:
        raise Conflict("An account with this email already exists")
    return rows[0]


async def authenticate(database: Database, passwords: Passwords, *, email: str, password: str) -> int | None:
    """The id of the account with this email and password, or None, after the same work either way.

    An unknown email costs one verification against a dummy hash, like a wrong password,
    so timing does not reveal who has an account. An old bcrypt hash (or an outdated
    Argon2 cost) is replaced once the password is known to be right.
    """
    users = await database.fetch(statements.USER_FOR_LOGIN, {"email": email})
    if not users:
        await run_sync(passwords.spend_check_time, password)
        return None
    user = users[0]
    valid, new_hash = await run_sync(passwords.verify, password, user["password"])
    if not valid:
        return None
    if new_hash is not None:
        await database.fetch(statements.SET_PASSWORD_HASH, {"user_id": user["id"], "new_hash": new_hash})
    user_id: int = user["id"]
    return user_id
