"""Reusable dependencies: the app's services, the caller, owned posts, rate limits.

Every protected endpoint takes `ViewerDep` (or `CurrentUser`, which loads the account):
that is the only place a bearer token is read, and the `Viewer` it gives makes every
statement prove the account still exists and the token still counts (app/domain/viewer.py).
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer

from app.api.schemas import INT64_MAX, PLAIN_DECIMAL
from app.db.backends import Database, Row
from app.domain import posts
from app.domain.errors import NotAuthenticated
from app.domain.posts import Feed
from app.domain.ratelimit import Limit, RateLimits
from app.domain.viewer import Viewer
from app.http import metrics
from app.security import Passwords, Tokens

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="login")

# Dependencies are async although most await nothing: FastAPI runs plain `def`
# dependencies in a thread pool, and that hand-off cost more than their work.


async def get_database(request: Request) -> Database:
    """The app's database; each statement borrows a pooled connection only while it runs.

    Not a `yield` dependency holding a connection for the whole request: that hand-off,
    and the exit stack FastAPI keeps for it, cost more than a statement.
    """
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


PasswordsDep = Annotated[Passwords, Depends(get_passwords)]


async def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


TokensDep = Annotated[Tokens, Depends(get_tokens)]


async def get_feed(request: Request) -> Feed:
    feed: Feed = request.app.state.feed
    return feed


FeedDep = Annotated[Feed, Depends(get_feed)]


async def get_viewer(request: Request, token: Annotated[str, Depends(oauth2_scheme)]) -> Viewer:
    """The caller a valid bearer token names (401 otherwise); that the token still counts is proven by what it reads."""
    state = request.app.state
    verified = state.tokens.verify(token)
    if verified is None:
        raise NotAuthenticated()
    return Viewer(
        verified.user_id,
        state.database,
        generation=verified.generation,
        jti=verified.jti,
        expires_at=verified.expires_at,
    )


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def email_reader(request: Request, viewer: Viewer) -> int | None:
    """Whose address alone a response may show (`shown_to` in app/api/views.py): None while addresses are public."""
    return None if request.app.state.settings.PUBLIC_EMAILS else viewer.id


async def get_current_user(viewer: ViewerDep) -> Row:
    """The caller's account (id, email, created_at, phone_number); 401 if the token is bad or the account gone."""
    return await viewer.account()


CurrentUser = Annotated[Row, Depends(get_current_user)]

PostId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The post's id"), PLAIN_DECIMAL]


async def get_owned_post(post_id: PostId, viewer: ViewerDep, _account: CurrentUser) -> Row:
    """The post in the path, if the caller owns it: 401 no account, 404 not visible, 403 not yours."""
    return await posts.owned_post(viewer, post_id)


OwnedPost = Annotated[Row, Depends(get_owned_post)]


async def get_rate_limits(request: Request) -> RateLimits | None:
    limits: RateLimits | None = request.app.state.rate_limits
    return limits


RateLimitsDep = Annotated[RateLimits | None, Depends(get_rate_limits)]


def client_address(request: Request) -> str:
    """The client's IP address (uvicorn takes it from X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


async def enforce_rate_limit(limit: Limit | None, key: str, what: str) -> None:
    """429 with Retry-After when `key` has used up its allowance (no-op when limits are off, or their
    storage is unreachable: app/domain/ratelimit.py fails open)."""
    if limit is None or (retry_after := await limit.retry_after(key)) is None:
        return
    metrics.rate_limit_refused(limit.name)
    raise HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many {what}; try again in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )
