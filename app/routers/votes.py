"""Votes: one per user and post."""

from fastapi import HTTPException, Response, status
from sqlalchemy.exc import IntegrityError

from app import queries
from app.deps import DatabaseDep, TokenUserId, find_visible_post, get_current_user
from app.models import MAX_ROW_ID
from app.routing import SlashAgnosticRouter, json_response, responses
from app.schemas import Message, VoteIn

router = SlashAgnosticRouter(prefix="/vote", tags=["votes"])


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=Message,
    summary="Vote or take a vote back",
    responses=responses(401, 404, 409, body=True),
)
async def vote(body: VoteIn, viewer_id: TokenUserId, database: DatabaseDep) -> Response:
    """`dir: 1` adds your vote (409 if you already voted); `dir: 0` removes it (404 if there is none)."""
    params = {"viewer_id": viewer_id, "post_id": body.post_id}
    if body.post_id <= MAX_ROW_ID:
        try:
            changed = await database.fetch(queries.ADD_VOTE if body.dir == 1 else queries.REMOVE_VOTE, params)
        except IntegrityError:  # the post was deleted while we voted: explained below as 404
            changed = []
        if changed:
            message = "successfully added vote" if body.dir == 1 else "successfully deleted vote"
            return json_response({"message": message}, status_code=status.HTTP_201_CREATED)
    # Nothing changed: find out why, in the order a client would want to hear it.
    await get_current_user(viewer_id, database)  # 401: the account is gone
    await find_visible_post(body.post_id, viewer_id, database)  # 404: no such post (for you)
    if body.dir == 1:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"user {viewer_id} has already voted on post {body.post_id}"
        )
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="vote does not exist")
