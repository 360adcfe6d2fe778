"""Accounts: register, look someone up, look yourself up."""

from typing import Annotated

from fastapi import HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool

from app import queries
from app.deps import CurrentUser, DatabaseDep, RateLimitsDep, client_address, enforce_rate_limit
from app.models import MAX_ROW_ID
from app.routing import SlashAgnosticRouter, responses
from app.schemas import MAX_ID, UserCreate, UserMe, UserOut
from app.security import hash_password

router = SlashAgnosticRouter(prefix="/users", tags=["users"])


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Register",
    responses=responses(409, 429, body=True),
)
async def create_user(
    body: UserCreate, request: Request, limits: RateLimitsDep, database: DatabaseDep
) -> dict[str, object]:
    """Create an account; the email must not be registered yet (compared case-insensitively)."""
    if limits is not None:
        address = client_address(request)
        enforce_rate_limit(limits.registrations_per_address, address, "registrations from your address")
        limits.registrations_per_address.hit(address)
    # Hashing is deliberately slow: keep it off the event loop.
    password_hash = await run_in_threadpool(hash_password, body.password)
    rows = await database.fetch(
        queries.INSERT_USER, {"email": body.email, "password": password_hash, "phone_number": body.phone_number}
    )
    if not rows:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="An account with this email already exists")
    return dict(rows[0])


@router.get("/me", response_model=UserMe, summary="Your account", responses=responses(401))
async def read_current_user(user: CurrentUser) -> dict[str, object]:
    """The account the token belongs to, with its phone number."""
    return dict(user)


@router.get("/{user_id}", response_model=UserOut, summary="Get an account", responses=responses(401, 404))
async def read_user(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)], _caller: CurrentUser, database: DatabaseDep
) -> dict[str, object]:
    """Someone's public profile: id, email and when they joined."""
    users = await database.fetch(queries.USER_BY_ID, {"user_id": user_id}) if user_id <= MAX_ROW_ID else []
    if not users:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"user with id {user_id} was not found")
    return dict(users[0])
