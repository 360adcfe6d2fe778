"""Votes: one per user and post."""

from fastapi import HTTPException, status
from sqlalchemy.exc import IntegrityError

from app import queries
from app.deps import Connection, CurrentUser, find_visible_post, post_not_found
from app.routing import SlashAgnosticRouter, responses
from app.schemas import Message, VoteIn

router = SlashAgnosticRouter(prefix="/vote", tags=["votes"])


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=Message,
    summary="Vote or take a vote back",
    responses=responses(401, 404, 409),
)
async def vote(body: VoteIn, user: CurrentUser, connection: Connection) -> Message:
    """`dir: 1` adds your vote (409 if you already voted); `dir: 0` removes it (404 if there is none)."""
    post = await find_visible_post(body.post_id, user.id, connection)
    params = {"user_id": user.id, "post_id": post.id}
    if body.dir == 1:
        try:
            result = await connection.execute(queries.INSERT_VOTE[connection.dialect.name], params)
        except IntegrityError:  # the post was deleted after we looked it up
            raise post_not_found(post.id) from None
        if result.rowcount == 0:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"user {user.id} has already voted on post {post.id}")
        return Message(message="successfully added vote")
    result = await connection.execute(queries.DELETE_VOTE, params)
    if result.rowcount == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="vote does not exist")
    return Message(message="successfully deleted vote")
