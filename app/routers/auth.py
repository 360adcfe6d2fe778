"""Logging in: the OAuth2 password flow (form fields `username` = email, `password`)."""

from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, StringConstraints

from app import queries
from app.config import settings
from app.deps import DatabaseDep, RateLimitsDep, client_address, credentials_error, enforce_rate_limit
from app.routing import SlashAgnosticRouter, responses
from app.schemas import EMAIL_MAX_LENGTH, StorableStr, Token, email_address
from app.security import create_access_token, spend_password_check_time, verify_password

router = SlashAgnosticRouter(tags=["authentication"])

# Long enough for any password we accept at registration, short enough that
# hashing it costs nothing unusual.
LOGIN_PASSWORD_MAX_LENGTH = 1024


class LoginForm(BaseModel):
    """The OAuth2 password grant's form; Swagger UI's Authorize dialog sends exactly this."""

    username: Annotated[StorableStr, StringConstraints(min_length=1, max_length=EMAIL_MAX_LENGTH)]
    password: Annotated[StorableStr, StringConstraints(min_length=1, max_length=LOGIN_PASSWORD_MAX_LENGTH)]
    grant_type: Annotated[str, StringConstraints(pattern="^password$")] | None = None
    scope: str = ""


def login_email(typed: str) -> str:
    """The address to look up: normalised exactly as at registration, so what was typed then works now."""
    try:
        return email_address(typed.strip())
    except ValueError:
        return typed.strip()  # cannot be one of ours, but accounts adopted from elsewhere may be


@router.post("/login", response_model=Token, summary="Log in", responses=responses(401, 429, body=True))
async def login(
    form: Annotated[LoginForm, Form()], request: Request, limits: RateLimitsDep, database: DatabaseDep
) -> Token:
    """Exchange email and password for a bearer token."""
    email = login_email(form.username)
    address, account = client_address(request), email.lower()
    if limits is not None:
        # Checked before any hashing: a refused attempt costs the server nothing.
        enforce_rate_limit(limits.failed_logins_per_address, address, "failed logins from your address")
        enforce_rate_limit(limits.failed_logins_per_account, account, "failed logins for this account")
    users = await database.fetch(queries.USER_FOR_LOGIN, {"email": email})
    user = users[0] if users else None
    if user is None:
        # Same work as a wrong password, so timing does not reveal who has an account.
        await run_in_threadpool(spend_password_check_time, form.password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await run_in_threadpool(verify_password, form.password, user["password"])
    if user is None or not valid:
        if limits is not None:
            limits.failed_logins_per_address.hit(address)
            limits.failed_logins_per_account.hit(account)
        raise credentials_error("Invalid credentials")
    if limits is not None:
        limits.failed_logins_per_account.reset(account)
    if new_hash is not None:
        # An old bcrypt hash (or outdated Argon2 cost) is replaced now that we know the password.
        await database.fetch(queries.SET_PASSWORD_HASH, {"user_id": user["id"], "new_hash": new_hash})
    token = create_access_token(
        user["id"], secret_key=settings.SECRET_KEY, expires_in=timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    )
    return Token(access_token=token)
