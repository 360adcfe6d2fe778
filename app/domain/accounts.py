"""Accounts: registering, checking a password at login, and what owners do with their account.

Hashing is deliberately slow (tens of milliseconds), so it runs in a worker thread,
off the event loop: inside an `async def` it stalled every other request.

Self-service (phone number, password, logging out, deletion) runs as the `Viewer`: each
change is one statement that changes nothing unless the caller's token still counts.
Changing the password, logging out everywhere and deleting the account move the
account's token generation on (or remove it) in that same statement, so every token
issued before is refused from then on, wherever it was remembered.
"""

import time

from anyio.to_thread import run_sync

from app.db import statements
from app.db.backends import Database, Row
from app.domain.errors import Conflict
from app.domain.viewer import Viewer
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
    # Its first reads must find it (standbys: app/db/replicas.py).
    await database.note_write(rows[0]["id"])
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
    return account_key(account["id"]) if account is not None else f"unknown {email.casefold()}"


def account_key(user_id: int) -> str:
    """What an account's failed password checks are counted under (logins and confirmations alike)."""
    return f"account {user_id}"


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


async def own_password_hash(viewer: Viewer) -> str:
    """What the caller's password is stored as (401 when the token no longer counts)."""
    (account,) = await viewer.fetch(statements.VIEWER_PASSWORD)
    password_hash: str = account["password"]
    return password_hash


async def password_matches(passwords: Passwords, password_hash: str, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made from (in a worker thread).

    No rehash here: the callers confirm a password to replace it or to delete the account.
    """
    valid, _rehash = await run_sync(passwords.verify, password, password_hash)
    return valid


async def update_phone_number(viewer: Viewer, phone_number: str | None) -> Row:
    """Set (or, with None, clear) the caller's phone number; the account as GET /users/me shows it."""
    (account,) = await viewer.fetch(statements.UPDATE_PHONE_NUMBER, {"phone_number": phone_number})
    return account


async def change_password(viewer: Viewer, passwords: Passwords, new_password: str) -> None:
    """Store the new password's hash and refuse every token issued before (401 if the token was revoked meanwhile)."""
    new_hash = await run_sync(passwords.hash, new_password)
    await viewer.fetch(statements.CHANGE_PASSWORD, {"new_hash": new_hash})


async def log_out_everywhere(viewer: Viewer) -> None:
    """Refuse every token of the caller's account issued until now (the caller's own included)."""
    await viewer.fetch(statements.LOG_OUT_EVERYWHERE)


async def log_out(viewer: Viewer) -> None:
    """Refuse the token the caller presented, until it expires; other tokens keep working.

    Also deletes a batch of revocations of tokens that have expired since (they are
    refused anyway), so the table holds about one token lifetime's logouts.
    """
    await viewer.fetch(statements.REVOKE_TOKEN, {"expires_at": viewer.expires_at})
    await viewer.database.fetch(statements.PURGE_REVOKED_TOKENS, {"now": int(time.time())})


async def delete_account(viewer: Viewer) -> None:
    """Delete the caller's account; its posts and votes go with it, and so do other people's votes on its posts."""
    await viewer.fetch(statements.DELETE_ACCOUNT)


async def stored_bcrypt_rounds(database: Database) -> int | None:
    """The highest bcrypt cost among stored password hashes (accounts adopted from the course app), or None."""
    rows = await database.fetch(statements.MAX_BCRYPT_ROUNDS)
    rounds = rows[0]["rounds"] if rows else None
    return int(rounds) if rounds is not None else None
