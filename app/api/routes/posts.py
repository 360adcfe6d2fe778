"""Posts: the feed, one post, and the owner's edits."""

import re
from typing import Annotated, Any
from urllib.parse import quote, unquote_plus, urlencode

from fastapi import Query, Request, Response, status

from app.api.deps import CurrentUser, FeedDep, OwnedPost, PostId, ViewerDep, email_reader
from app.api.routing import SlashAgnosticRouter, json_response, responses
from app.api.schemas import (
    INT64_MAX,
    PLAIN_DECIMAL,
    SEARCH_MAX_LENGTH,
    PostCreate,
    PostOut,
    PostPatch,
    PostReplace,
    PostWithVotes,
    StorableStr,
)
from app.api.views import owner_from, owner_of, post_with_owner, post_with_votes
from app.domain import posts

router = SlashAgnosticRouter(prefix="/posts", tags=["posts"])


NEXT_PAGE_HEADER = {
    "Link": {
        "description": 'With a full page: `<...?before_id=<last id>&...>; rel="next"` (RFC 8288), the next page '
        "with the same parameters (a relative reference: resolve it against the request's URL)",
        "schema": {"type": "string"},
    }
}


# Characters a URI's path and query may hold as they are (RFC 3986), "%" escapes included.
_URI_PATH = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*")
_URI_QUERY = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*")
PAGING_PARAMETERS = ("skip", "before_id")


def next_page_link(request: Request, last_id: int) -> str:
    """`Link` to the page after the one answered: the same query, keyset-paged from its last post.

    A relative reference (RFC 8288, section 3): it names no host, so it never repeats a
    `Host` header back and stays right behind proxies. The other parameters are kept as
    the client wrote them; `skip` and `before_id` go, and `before_id` comes back with the
    page's last id. (Built from the raw query string: parsing and re-encoding it, through
    `request.url` and `urlencode`, cost about 10 % of a feed request.)
    """
    path: str = request.scope["path"]
    query: str = request.scope["query_string"].decode("latin-1")
    if _URI_PATH.fullmatch(path) and _URI_QUERY.fullmatch(query):
        kept = [pair for pair in query.split("&") if pair and _parameter_name(pair) not in PAGING_PARAMETERS]
    else:  # characters a URI does not carry as they are: re-encode everything
        path = quote(path)
        pairs = request.query_params.multi_items()
        kept = [urlencode([(key, value)]) for key, value in pairs if key not in PAGING_PARAMETERS]
    kept.append(f"before_id={last_id}")
    return f'<{path}?{"&".join(kept)}>; rel="next"'


def _parameter_name(pair: str) -> str:
    name = pair.partition("=")[0]
    return unquote_plus(name) if "%" in name or "+" in name else name


# A search past SEARCH_TIMEOUT_MS is stopped and answered 503 too (app/db/backends.py, SearchTimedOut).
SEARCH_STOPPED = {
    503: "The database is unavailable, or the search took longer than SEARCH_TIMEOUT_MS and was stopped "
    "(the detail says which); try again shortly, or with more specific words"
}


@router.get(
    "/",
    response_model=list[PostWithVotes],
    summary="List posts",
    responses={**responses(401, descriptions=SEARCH_STOPPED), 200: {"headers": NEXT_PAGE_HEADER}},
)
async def list_posts(
    request: Request,
    viewer: ViewerDep,
    feed: FeedDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size"), PLAIN_DECIMAL] = 10,
    skip: Annotated[int, Query(ge=0, le=INT64_MAX, description="Posts to skip"), PLAIN_DECIMAL] = 0,
    search: Annotated[
        StorableStr,
        Query(max_length=SEARCH_MAX_LENGTH, description="Case-insensitive part of the title, taken literally"),
    ] = "",
    before_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=INT64_MAX,
            description="Keyset paging: only posts after this one in feed order (pass the last id of the previous "
            "page). Costs the same on page 10,000 as on page 1, unlike `skip`. An id with no post you can see "
            "is answered with 422.",
        ),
        PLAIN_DECIMAL,
    ] = None,
    owner_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=INT64_MAX,
            description="Only this user's posts (their drafts too, when that user is you); combines with the others",
        ),
        PLAIN_DECIMAL,
    ] = None,
) -> Response:
    """Published posts and your own drafts, newest first, with owner, vote count and whether you voted.

    A full page carries a `Link` header to the next one (`rel="next"`)."""
    rows = await feed.page(viewer, limit=limit, skip=skip, search=search, before_id=before_id, owner_id=owner_id)
    shown_to = email_reader(request, viewer)
    response = json_response([post_with_votes(row, shown_to) for row in rows])
    if len(rows) == limit:
        response.headers["Link"] = next_page_link(request, rows[-1]["id"])
    return response


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=PostOut,
    summary="Create a post",
    responses=responses(401, body=True),
)
async def create_post(body: PostCreate, viewer: ViewerDep) -> Response:
    """Publish (or draft) a post; you are its owner."""
    row = await posts.create_post(viewer, title=body.title, content=body.content, published=body.published)
    return json_response(post_with_owner(row, owner_from(row)), status_code=status.HTTP_201_CREATED)


@router.get("/{post_id}", response_model=PostWithVotes, summary="Get a post", responses=responses(401, 404))
async def read_post(post_id: PostId, request: Request, viewer: ViewerDep) -> Response:
    """One post with its owner, vote count and whether you voted."""
    return json_response(post_with_votes(await posts.read_post(viewer, post_id), email_reader(request, viewer)))


@router.put(
    "/{post_id}", response_model=PostOut, summary="Replace a post", responses=responses(401, 403, 404, body=True)
)
async def replace_post(body: PostReplace, post: OwnedPost, viewer: ViewerDep, user: CurrentUser) -> dict[str, Any]:
    """Replace title, content and published (default true) of your post."""
    return post_with_owner(await posts.update_post(viewer, post, body.model_dump()), owner_of(user))


@router.patch(
    "/{post_id}", response_model=PostOut, summary="Edit a post", responses=responses(401, 403, 404, body=True)
)
async def patch_post(body: PostPatch, post: OwnedPost, viewer: ViewerDep, user: CurrentUser) -> dict[str, Any]:
    """Change only the fields you send."""
    changes = body.model_dump(exclude_unset=True)
    return post_with_owner(await posts.update_post(viewer, post, changes), owner_of(user))


@router.delete(
    "/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a post",
    responses=responses(401, 403, 404),
)
async def delete_post(post: OwnedPost, viewer: ViewerDep) -> Response:
    """Delete your post and its votes."""
    await posts.delete_post(viewer, post)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
