"""Posts: the feed, one post, and the owner's edits."""

from typing import Annotated, Any

from fastapi import Query, Response, status

from app import queries
from app.deps import Connection, CurrentUser, OwnedPost, PostId, owner_of, post_not_found
from app.models import MAX_ROW_ID
from app.routing import SlashAgnosticRouter, responses
from app.schemas import MAX_ID, SEARCH_MAX_LENGTH, PostCreate, PostOut, PostPatch, PostReplace, PostWithVotes, storable

router = SlashAgnosticRouter(prefix="/posts", tags=["posts"])


@router.get("/", response_model=list[PostWithVotes], summary="List posts", responses=responses(401))
async def list_posts(
    user: CurrentUser,
    connection: Connection,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 10,
    skip: Annotated[int, Query(ge=0, le=MAX_ID, description="Posts to skip")] = 0,
    search: Annotated[
        str, Query(max_length=SEARCH_MAX_LENGTH, description="Case-insensitive part of the title, taken literally")
    ] = "",
) -> list[dict[str, Any]]:
    """Published posts and your own drafts, newest first, with owner and vote count."""
    storable(search)
    params: dict[str, Any] = {"viewer_id": user.id, "limit": limit, "skip": skip}
    statement = queries.LIST_POSTS
    if search:
        statement = queries.SEARCH_POSTS
        params["pattern"] = queries.like_pattern(search)
    rows = (await connection.execute(statement, params)).all()
    return [queries.post_with_votes(row) for row in rows]


@router.post(
    "/", status_code=status.HTTP_201_CREATED, response_model=PostOut, summary="Create a post", responses=responses(401)
)
async def create_post(body: PostCreate, user: CurrentUser, connection: Connection) -> dict[str, Any]:
    """Publish (or draft) a post; you are its owner."""
    row = (await connection.execute(queries.INSERT_POST, {**body.model_dump(), "owner_id": user.id})).one()
    return queries.post_with_owner(row, owner_of(user))


@router.get("/{post_id}", response_model=PostWithVotes, summary="Get a post", responses=responses(401, 404))
async def read_post(post_id: PostId, user: CurrentUser, connection: Connection) -> dict[str, Any]:
    """One post with its owner and vote count."""
    row = None
    if post_id <= MAX_ROW_ID:
        params = {"post_id": post_id, "viewer_id": user.id}
        row = (await connection.execute(queries.POST_DETAIL, params)).one_or_none()
    if row is None:
        raise post_not_found(post_id)
    return queries.post_with_votes(row)


async def _update(
    post: OwnedPost, user: CurrentUser, connection: Connection, changes: dict[str, Any]
) -> dict[str, Any]:
    row = (await connection.execute(queries.UPDATE_POST.values(**changes), {"post_id": post.id})).one_or_none()
    if row is None:  # deleted between the ownership check and the update
        raise post_not_found(post.id)
    return queries.post_with_owner(row, owner_of(user))


@router.put("/{post_id}", response_model=PostOut, summary="Replace a post", responses=responses(401, 403, 404))
async def replace_post(body: PostReplace, post: OwnedPost, user: CurrentUser, connection: Connection) -> dict[str, Any]:
    """Replace title, content and published (default true) of your post."""
    return await _update(post, user, connection, body.model_dump())


@router.patch("/{post_id}", response_model=PostOut, summary="Edit a post", responses=responses(401, 403, 404))
async def patch_post(body: PostPatch, post: OwnedPost, user: CurrentUser, connection: Connection) -> dict[str, Any]:
    """Change only the fields you send."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        row = (await connection.execute(queries.POST_DETAIL, {"post_id": post.id, "viewer_id": user.id})).one()
        return queries.post_with_owner(row, owner_of(user))
    return await _update(post, user, connection, changes)


@router.delete(
    "/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a post",
    responses=responses(401, 403, 404),
)
async def delete_post(post: OwnedPost, connection: Connection) -> Response:
    """Delete your post and its votes."""
    await connection.execute(queries.DELETE_POST, {"post_id": post.id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
