"""Accounts: register, look someone up, look yourself up."""

from typing import Annotated

from fastapi import Path, Request, status

from app.api.deps import CurrentUser, DatabaseDep, PasswordsDep, RateLimitsDep, client_address, enforce_rate_limit
from app.api.routing import SlashAgnosticRouter, responses
from app.api.schemas import INT64_MAX, PLAIN_DECIMAL, UserCreate, UserMe, UserOut
from app.db import statements
from app.domain import accounts
from app.domain.errors import NotFound

router = SlashAgnosticRouter(prefix="/users", tags=["users"])


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
        enforce_rate_limit(limits.registrations_per_address, address, "registrations from your address")
        limits.registrations_per_address.hit(address)
    account = await accounts.register(
        database, passwords, email=body.email, password=body.password, phone_number=body.phone_number
    )
    return dict(account)


@router.get("/me", response_model=UserMe, summary="Your account", responses=responses(401))
async def read_current_user(user: CurrentUser) -> dict[str, object]:
    """The account the token belongs to, with its phone number."""
    return dict(user)


@router.get("/{user_id}", response_model=UserOut, summary="Get an account", responses=responses(401, 404))
async def read_user(
    user_id: Annotated[int, Path(ge=1, le=INT64_MAX), PLAIN_DECIMAL], _caller: CurrentUser, database: DatabaseDep
) -> dict[str, object]:
    """Someone's public profile: id, email and when they joined."""
    users = await database.fetch(statements.USER_BY_ID, {"user_id": user_id})
    if not users:
        raise NotFound(f"user with id {user_id} was not found")
    return dict(users[0])
