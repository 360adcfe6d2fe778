"""Reusable dependencies: the database, the caller, and post lookups."""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer

from app import queries
from app.config import settings
from app.database import Database, Row
from app.models import MAX_ROW_ID
from app.ratelimit import RateLimits, SlidingWindowLimiter
from app.schemas import MAX_ID
from app.security import user_id_from_token

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="login")


async def get_database(request: Request) -> Database:
    """The app's database; each statement borrows a pooled connection only while it runs.

    Async although it awaits nothing (FastAPI runs plain `def` dependencies in a thread),
    and not a `yield` dependency holding a connection for the whole request: that
    hand-off, and the exit stack FastAPI keeps for it, cost more than a statement.
    """
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


def client_address(request: Request) -> str:
    """The client's IP address (uvicorn takes it from X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def enforce_rate_limit(limiter: SlidingWindowLimiter | None, key: str, what: str) -> None:
    """429 with Retry-After when `key` has used up its allowance (no-op when limits are off)."""
    retry_after = limiter.retry_after(key) if limiter is not None else None
    if retry_after is not None:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many {what}; try again in {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )


def rate_limits(request: Request) -> RateLimits | None:
    limits: RateLimits | None = request.app.state.rate_limits
    return limits


RateLimitsDep = Annotated[RateLimits | None, Depends(rate_limits)]


def credentials_error(detail: str = "Could not validate credentials") -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_token_user_id(token: Annotated[str, Depends(oauth2_scheme)]) -> int:
    """The user id a valid bearer token names (401 otherwise), not yet checked against the database.

    Only for endpoints whose own query proves the account still exists (see
    `ensure_account_exists`); everything else uses `CurrentUser`. Async although it
    awaits nothing: FastAPI runs plain `def` dependencies in a thread pool, and that
    hand-off cost more than the decoding itself.
    """
    user_id = user_id_from_token(token, secret_key=settings.SECRET_KEY)
    if user_id is None or user_id > MAX_ROW_ID:
        raise credentials_error()
    return user_id


TokenUserId = Annotated[int, Depends(get_token_user_id)]


async def get_current_user(user_id: TokenUserId, database: DatabaseDep) -> Row:
    """The account a valid bearer token names; 401 if the token is bad or the account is gone."""
    users = await database.fetch(queries.USER_BY_ID, {"user_id": user_id})
    if not users:
        raise credentials_error()
    return users[0]


CurrentUser = Annotated[Row, Depends(get_current_user)]


async def ensure_account_exists(user_id: int, database: Database) -> None:
    """401 unless the account exists: for endpoints that got no rows from a query that requires it."""
    await get_current_user(user_id, database)


PostId = Annotated[int, Path(ge=1, le=MAX_ID, description="The post's id")]


def post_not_found(post_id: int) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"post with id {post_id} was not found")


async def find_visible_post(post_id: int, viewer_id: int, database: Database) -> Row:
    """The post (id, owner_id, published), if the viewer may see it: published, or their own; else 404."""
    posts = await database.fetch(queries.POST_OWNERSHIP, {"post_id": post_id}) if post_id <= MAX_ROW_ID else []
    # Someone else's draft is answered exactly like a missing post: its existence is private.
    if not posts or not (posts[0]["published"] or posts[0]["owner_id"] == viewer_id):
        raise post_not_found(post_id)
    return posts[0]


async def get_post_or_404(post_id: PostId, user: CurrentUser, database: DatabaseDep) -> Row:
    """The post in the path, if the caller may see it."""
    return await find_visible_post(post_id, user["id"], database)


VisiblePost = Annotated[Row, Depends(get_post_or_404)]


async def get_owned_post(post: VisiblePost, user: CurrentUser) -> Row:
    """The post, if the caller owns it; 403 otherwise."""
    if post["owner_id"] != user["id"]:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not authorized to perform requested action")
    return post


OwnedPost = Annotated[Row, Depends(get_owned_post)]


def owner_of(user: Row) -> dict[str, Any]:
    """The public view of an account, as embedded in posts."""
    return {"id": user["id"], "email": user["email"], "created_at": user["created_at"]}
