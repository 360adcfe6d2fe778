"""Accounts: register, look someone up, look yourself up, and manage your own account."""

import time
from typing import Annotated

from fastapi import Path, Request, Response, status

from app.api.deps import (
    CurrentUser,
    DatabaseDep,
    PasswordsDep,
    RateLimitsDep,
    ViewerDep,
    client_address,
    email_reader,
    enforce_rate_limit,
)
from app.api.routing import SlashAgnosticRouter, responses
from app.api.schemas import (
    INT64_MAX,
    PLAIN_DECIMAL,
    AccountDeletion,
    PasswordChange,
    PublicUser,
    UserCreate,
    UserMe,
    UserOut,
    UserPatch,
)
from app.api.views import public_profile
from app.db import statements
from app.domain import accounts
from app.domain.errors import Forbidden, NotFound
from app.domain.ratelimit import RateLimits
from app.domain.viewer import Viewer
from app.security import Passwords

router = SlashAgnosticRouter(prefix="/users", tags=["users"])

WRONG_PASSWORD = {403: "The password is not correct"}


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Register",
    responses=responses(409, 429, body=True),
)
async def create_user(
    body: UserCreate, request: Request, limits: RateLimitsDep, database: DatabaseDep, passwords: PasswordsDep
) -> dict[str, object]:
    """Create an account; the email must not be registered yet (compared case-insensitively)."""
    if limits is not None:
        address = client_address(request)
        await enforce_rate_limit(limits.registrations_per_address, address, "registrations from your address")
        await limits.registrations_per_address.hit(address)
    account = await accounts.register(
        database, passwords, email=body.email, password=body.password, phone_number=body.phone_number
    )
    return dict(account)


@router.get("/me", response_model=UserMe, summary="Your account", responses=responses(401))
async def read_current_user(user: CurrentUser) -> dict[str, object]:
    """The account the token belongs to, with its phone number."""
    return dict(user)


@router.patch("/me", response_model=UserMe, summary="Edit your account", responses=responses(401, body=True))
async def update_current_user(body: UserPatch, viewer: ViewerDep) -> dict[str, object]:
    """Change the fields you send: `phone_number` sets your number, `null` removes it."""
    changes = body.model_dump(exclude_unset=True)
    if "phone_number" not in changes:
        return dict(await viewer.account())
    return dict(await accounts.update_phone_number(viewer, changes["phone_number"]))


async def confirm_password(
    request: Request, viewer: Viewer, limits: RateLimits | None, passwords: Passwords, password: str
) -> None:
    """Check the caller's current password like a login: 401 if the token no longer counts, 429 while the
    account or the address is locked, and, when it is wrong, 403 after the same time as a failed login,
    counted as one. A stolen token alone must not buy unlimited guesses at the password."""
    started = time.perf_counter()
    password_hash = await accounts.own_password_hash(viewer)
    address, key = client_address(request), accounts.account_key(viewer.id)
    if limits is not None:
        # Checked before any hashing, as at login: a refused attempt costs the server nothing.
        await enforce_rate_limit(limits.failed_logins_per_address, address, "failed logins from your address")
        await enforce_rate_limit(limits.failed_logins_per_account, key, "failed logins for this account")
    if await accounts.password_matches(passwords, password_hash, password):
        if limits is not None:
            await limits.failed_logins_per_account.reset(key)
        return
    if limits is not None:
        await limits.failed_logins_per_address.hit(address)
        await limits.failed_logins_per_account.hit(key)
    await passwords.pad_failure(started)
    raise Forbidden("The password is not correct")


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Change your password",
    responses=responses(401, 403, 429, body=True, descriptions=WRONG_PASSWORD),
)
async def change_password(
    body: PasswordChange, request: Request, viewer: ViewerDep, limits: RateLimitsDep, passwords: PasswordsDep
) -> Response:
    """Set a new password. Every token issued until now stops working, this one included: log in again.
    A wrong `current_password` is 403 and counts as a failed login."""
    await confirm_password(request, viewer, limits, passwords, body.current_password)
    await accounts.change_password(viewer, passwords, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Log out everywhere",
    responses=responses(401),
)
async def log_out_everywhere(viewer: ViewerDep) -> Response:
    """Every token issued to your account until now stops working, on every device, this one included."""
    await accounts.log_out_everywhere(viewer)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete your account",
    responses=responses(401, 403, 429, body=True, descriptions=WRONG_PASSWORD),
)
async def delete_current_user(
    body: AccountDeletion, request: Request, viewer: ViewerDep, limits: RateLimitsDep, passwords: PasswordsDep
) -> Response:
    """Delete your account, confirmed with your password (in the JSON body). Your posts and votes are deleted
    with it, and other people's votes on your posts; your tokens stop working. A wrong password is 403 and
    counts as a failed login."""
    await confirm_password(request, viewer, limits, passwords, body.password)
    await accounts.delete_account(viewer)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{user_id}", response_model=PublicUser, summary="Get an account", responses=responses(401, 404))
async def read_user(
    user_id: Annotated[int, Path(ge=1, le=INT64_MAX), PLAIN_DECIMAL],
    request: Request,
    viewer: ViewerDep,
    _caller: CurrentUser,
    database: DatabaseDep,
) -> dict[str, object]:
    """Someone's public profile: id, email (unless the server keeps others' addresses private) and when they
    joined."""
    users = await database.fetch(statements.USER_BY_ID, {"user_id": user_id})
    if not users:
        raise NotFound(f"user with id {user_id} was not found")
    return public_profile(users[0], email_reader(request, viewer))
