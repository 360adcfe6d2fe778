"""Logging in (the OAuth2 password flow: form fields `username` = email, `password`) and out."""

import time
from typing import Annotated

from fastapi import Form, Request, Response, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from app.api.deps import (
    DatabaseDep,
    PasswordsDep,
    RateLimitsDep,
    TokensDep,
    ViewerDep,
    client_address,
    enforce_rate_limit,
)
from app.api.routing import SlashAgnosticRouter, responses
from app.api.schemas import (
    EMAIL_MAX_LENGTH,
    STORABLE,
    STORABLE_PATTERN,
    CurrentPassword,
    Token,
    documented_pattern,
    email_address,
)
from app.domain import accounts
from app.domain.errors import NotAuthenticated

router = SlashAgnosticRouter(tags=["authentication"])


class LoginForm(BaseModel):
    """The OAuth2 password grant's form (RFC 6749 4.3); Swagger UI's Authorize dialog sends it.

    Client credentials may come along (the grant allows them) and are not used; any other
    field is refused, as in every request body.
    """

    model_config = ConfigDict(extra="forbid")

    username: Annotated[
        str,
        StringConstraints(min_length=1, max_length=EMAIL_MAX_LENGTH),
        STORABLE,
        documented_pattern(STORABLE_PATTERN),
    ]
    password: CurrentPassword
    grant_type: Annotated[str, StringConstraints(pattern="^password$")] | None = None
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


def login_email(typed: str) -> str:
    """The address to look up: normalised exactly as at registration, so what was typed then works now."""
    try:
        return email_address(typed.strip())
    except ValueError:
        return typed.strip()  # cannot be one of ours, but accounts adopted from elsewhere may be


@router.post("/login", response_model=Token, summary="Log in", responses=responses(401, 429, body=True))
async def login(
    form: Annotated[LoginForm, Form()],
    request: Request,
    limits: RateLimitsDep,
    database: DatabaseDep,
    passwords: PasswordsDep,
    tokens: TokensDep,
) -> Token:
    """Exchange email and password for a bearer token."""
    started = time.perf_counter()
    email, address = login_email(form.username), client_address(request)
    if limits is not None:
        # Checked before any hashing: a refused attempt costs the server nothing.
        await enforce_rate_limit(limits.failed_logins_per_address, address, "failed logins from your address")
    account = await accounts.find_login(database, email)
    key = accounts.login_key(account, email)
    if limits is not None:
        await enforce_rate_limit(limits.failed_logins_per_account, key, "failed logins for this account")
    user_id = await accounts.check_password(database, passwords, account, form.password)
    if user_id is None:
        if limits is not None:
            await limits.failed_logins_per_address.hit(address)
            await limits.failed_logins_per_account.hit(key)
        await passwords.pad_failure(started)
        raise NotAuthenticated("Invalid credentials")
    if limits is not None:
        await limits.failed_logins_per_account.reset(key)
    assert account is not None  # a password matched
    return Token(access_token=tokens.issue(user_id, account["token_generation"]))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Log out",
    responses=responses(401),
)
async def logout(viewer: ViewerDep) -> Response:
    """The token you send stops working (on every worker and host at once); your other tokens keep working."""
    await accounts.log_out(viewer)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
