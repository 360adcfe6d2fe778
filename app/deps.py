"""Reusable dependencies: the database connection, the caller, and post lookups."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from app import queries
from app.config import settings
from app.database import DatabaseUnavailable
from app.models import MAX_ROW_ID
from app.queries import AnyRow
from app.ratelimit import RateLimits, SlidingWindowLimiter
from app.schemas import MAX_ID
from app.security import user_id_from_token

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="login")


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """One pooled AUTOCOMMIT connection per request, shared by all its dependencies."""
    connection = request.app.state.engine.connect()
    try:
        await connection.start()
    except (OSError, TimeoutError) as exc:  # refused, unreachable, or no answer in time
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    try:
        yield connection
    finally:
        await connection.close()


Connection = Annotated[AsyncConnection, Depends(get_connection)]


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


async def get_current_user(user_id: TokenUserId, connection: Connection) -> AnyRow:
    """The account a valid bearer token names; 401 if the token is bad or the account is gone."""
    user = (await connection.execute(queries.USER_BY_ID, {"user_id": user_id})).one_or_none()
    if user is None:
        raise credentials_error()
    return user


CurrentUser = Annotated[AnyRow, Depends(get_current_user)]


async def ensure_account_exists(user_id: int, connection: AsyncConnection) -> None:
    """401 unless the account exists: for endpoints that got no rows from a query that requires it."""
    await get_current_user(user_id, connection)


PostId = Annotated[int, Path(ge=1, le=MAX_ID, description="The post's id")]


def post_not_found(post_id: int) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"post with id {post_id} was not found")


async def find_visible_post(post_id: int, viewer_id: int, connection: AsyncConnection) -> AnyRow:
    """The post (id, owner_id, published), if the viewer may see it: published, or their own; else 404."""
    post = None
    if post_id <= MAX_ROW_ID:
        post = (await connection.execute(queries.POST_OWNERSHIP, {"post_id": post_id})).one_or_none()
    # Someone else's draft is answered exactly like a missing post: its existence is private.
    if post is None or not (post.published or post.owner_id == viewer_id):
        raise post_not_found(post_id)
    return post


async def get_post_or_404(post_id: PostId, user: CurrentUser, connection: Connection) -> AnyRow:
    """The post in the path, if the caller may see it."""
    return await find_visible_post(post_id, user.id, connection)


VisiblePost = Annotated[AnyRow, Depends(get_post_or_404)]


async def get_owned_post(post: VisiblePost, user: CurrentUser) -> AnyRow:
    """The post, if the caller owns it; 403 otherwise."""
    if post.owner_id != user.id:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not authorized to perform requested action")
    return post


OwnedPost = Annotated[AnyRow, Depends(get_owned_post)]


def owner_of(user: AnyRow) -> dict[str, Any]:
    """The public view of an account, as embedded in posts."""
    return {"id": user.id, "email": user.email, "created_at": user.created_at}
