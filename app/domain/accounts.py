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


async def find_login(database: Database, email: str) -> Row | None:
    """The account (id, password) an email logs in to, compared ignoring case by the database."""
    users = await database.fetch(statements.USER_FOR_LOGIN, {"email": email})
    return users[0] if users else None


def login_key(account: Row | None, email: str) -> str:
    """What failed logins are counted under: the account itself, whatever spelling found it.

    Counting under the typed text let `İriswpzp@…` (which PostgreSQL's lower() finds as
    `iriswpzp@…`, Python's lower() does not) log in past a lock on the other spelling.
    """
    return f"account {account['id']}" if account is not None else f"unknown {email.casefold()}"


async def check_password(database: Database, passwords: Passwords, account: Row | None, password: str) -> int | None:
    """The account's id if `password` is its password, else None, after the same work either way.

    An unknown email costs one verification against a dummy hash, like a wrong password,
    so timing does not reveal who has an account; `Passwords.pad_failure` evens out the
    rest (a bcrypt hash, a stored value that is no hash). An old bcrypt hash (or an
    outdated Argon2 cost) is replaced once the password is known to be right.
    """
    if account is None:
        await run_sync(passwords.spend_check_time, password)
        return None
    valid, new_hash = await run_sync(passwords.verify, password, account["password"])
    if not valid:
        return None
    if new_hash is not None:
        await database.fetch(statements.SET_PASSWORD_HASH, {"user_id": account["id"], "new_hash": new_hash})
    user_id: int = account["id"]
    return user_id


async def stored_bcrypt_rounds(database: Database) -> int | None:
    """The highest bcrypt cost among stored password hashes (accounts adopted from the course app), or None."""
    rows = await database.fetch(statements.MAX_BCRYPT_ROUNDS)
    rounds = rows[0]["rounds"] if rows else None
    return int(rounds) if rounds is not None else None
