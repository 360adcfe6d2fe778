"""Posts: the feed, one post, and the owner's edits."""

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from app import queries
from app.database import Database, Row
from app.deps import (
    CurrentUser,
    DatabaseDep,
    OwnedPost,
    PostId,
    TokenUserId,
    credentials_error,
    ensure_account_exists,
    find_visible_post,
    owner_of,
    post_not_found,
)
from app.models import MAX_ROW_ID
from app.routing import SlashAgnosticRouter, json_response, responses
from app.schemas import (
    MAX_ID,
    SEARCH_MAX_LENGTH,
    PostCreate,
    PostOut,
    PostPatch,
    PostReplace,
    PostWithVotes,
    StorableStr,
)

router = SlashAgnosticRouter(prefix="/posts", tags=["posts"])


class ExpiringSet:
    """Keys remembered for `seconds` after they were last added; the oldest go first past `max_keys`."""

    def __init__(self, *, seconds: float, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._max_keys = max_keys
        self._clock = clock
        self._expiry: dict[str, float] = {}  # in the order the keys were added

    def add(self, key: str) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = self._clock() + self._seconds
        if len(self._expiry) > self._max_keys:
            del self._expiry[next(iter(self._expiry))]

    def __contains__(self, key: str) -> bool:
        expiry = self._expiry.get(key)
        if expiry is not None and expiry <= self._clock():
            del self._expiry[key]
            return False
        return expiry is not None

    def clear(self) -> None:
        self._expiry.clear()


# Searches whose first page was not within the newest SEARCH_WINDOW posts lately (a rare
# word): they skip the window and its wasted statement for a minute. Only a shortcut, per
# worker: the whole-table statement gives the same page either way.
sparse_searches = ExpiringSet(seconds=60, max_keys=4096)


@router.get("/", response_model=list[PostWithVotes], summary="List posts", responses=responses(401))
async def list_posts(
    viewer_id: TokenUserId,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 10,
    skip: Annotated[int, Query(ge=0, le=MAX_ID, description="Posts to skip")] = 0,
    search: Annotated[
        StorableStr,
        Query(max_length=SEARCH_MAX_LENGTH, description="Case-insensitive part of the title, taken literally"),
    ] = "",
    before_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="Keyset paging: only posts after this one in feed order (pass the last id of the previous "
            "page). Costs the same on page 10,000 as on page 1, unlike `skip`. An id with no post you can see "
            "is answered with 422.",
        ),
    ] = None,
) -> Response:
    """Published posts and your own drafts, newest first, with owner and vote count."""
    params: dict[str, Any] = {"viewer_id": viewer_id, "limit": limit, "skip": skip}
    if search:
        params["pattern"] = queries.like_pattern(search)
    if before_id is not None:
        if before_id > MAX_ROW_ID:  # no such post can exist (ids are 32-bit)
            await check_cursor(before_id, viewer_id, database)
        params["before_id"] = before_id
    keyset = before_id is not None
    rows: Sequence[Row] = []
    if search and skip + limit <= queries.SEARCH_WINDOW and search not in sparse_searches:
        rows = await database.fetch(queries.RECENT_SEARCH[keyset], params)
        if len(rows) < limit and skip == 0 and not keyset:
            sparse_searches.add(search)
    if len(rows) < limit:  # no window, or it held less than a page: ask the whole table
        rows = await database.fetch(queries.LIST_POSTS[bool(search), keyset], params)
    if not rows:
        await ensure_account_exists(viewer_id, database)
        if before_id is not None:
            await check_cursor(before_id, viewer_id, database)
    return json_response([queries.post_with_votes(row) for row in rows])


async def check_cursor(before_id: int, viewer_id: int, database: Database) -> None:
    """An empty keyset page must not hide a bad cursor: say so when the post is gone or not yours to see."""
    try:
        await find_visible_post(before_id, viewer_id, database)
    except HTTPException:
        raise RequestValidationError(
            [{"loc": ("query", "before_id"), "msg": f"no post {before_id} to page from", "type": "value_error"}]
        ) from None


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=PostOut,
    summary="Create a post",
    responses=responses(401, body=True),
)
async def create_post(body: PostCreate, viewer_id: TokenUserId, database: DatabaseDep) -> Response:
    """Publish (or draft) a post; you are its owner."""
    rows = await database.fetch(queries.CREATE_POST, {**body.model_dump(), "viewer_id": viewer_id})
    if not rows:  # the token's account no longer exists
        raise credentials_error()
    post = queries.post_with_owner(rows[0], queries.owner_from(rows[0]))
    return json_response(post, status_code=status.HTTP_201_CREATED)


@router.get("/{post_id}", response_model=PostWithVotes, summary="Get a post", responses=responses(401, 404))
async def read_post(post_id: PostId, viewer_id: TokenUserId, database: DatabaseDep) -> Response:
    """One post with its owner and vote count."""
    rows: Sequence[Row] = []
    if post_id <= MAX_ROW_ID:
        rows = await database.fetch(queries.POST_DETAIL, {"post_id": post_id, "viewer_id": viewer_id})
    if not rows:
        await ensure_account_exists(viewer_id, database)
        raise post_not_found(post_id)
    return json_response(queries.post_with_votes(rows[0]))


async def _update(post: Row, user: Row, database: Database, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `changes` (title, content, published; a missing one is kept) to an owned post."""
    unchanged = {"title": None, "content": None, "published": None}
    rows = await database.fetch(queries.UPDATE_POST, {**unchanged, **changes, "post_id": post["id"]})
    if not rows:  # deleted between the ownership check and the update
        raise post_not_found(post["id"])
    return queries.post_with_owner(rows[0], owner_of(user))


@router.put(
    "/{post_id}", response_model=PostOut, summary="Replace a post", responses=responses(401, 403, 404, body=True)
)
async def replace_post(body: PostReplace, post: OwnedPost, user: CurrentUser, database: DatabaseDep) -> dict[str, Any]:
    """Replace title, content and published (default true) of your post."""
    return await _update(post, user, database, body.model_dump())


@router.patch(
    "/{post_id}", response_model=PostOut, summary="Edit a post", responses=responses(401, 403, 404, body=True)
)
async def patch_post(body: PostPatch, post: OwnedPost, user: CurrentUser, database: DatabaseDep) -> dict[str, Any]:
    """Change only the fields you send."""
    return await _update(post, user, database, body.model_dump(exclude_unset=True))


@router.delete(
    "/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a post",
    responses=responses(401, 403, 404),
)
async def delete_post(post: OwnedPost, database: DatabaseDep) -> Response:
    """Delete your post and its votes."""
    await database.fetch(queries.DELETE_POST, {"post_id": post["id"]})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
