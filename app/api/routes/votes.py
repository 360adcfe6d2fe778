"""Votes: one per user and post."""

from fastapi import Response, status

from app.api.deps import ViewerDep
from app.api.routing import SlashAgnosticRouter, json_response, responses
from app.api.schemas import Message, VoteIn
from app.domain import posts

router = SlashAgnosticRouter(prefix="/vote", tags=["votes"])


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=Message,
    summary="Vote or take a vote back",
    responses=responses(401, 404, 409, body=True),
)
async def vote(body: VoteIn, viewer: ViewerDep) -> Response:
    """`dir: 1` adds your vote (409 if you already voted); `dir: 0` removes it (404 if there is none)."""
    await posts.vote(viewer, body.post_id, add=body.dir == 1)
    message = "successfully added vote" if body.dir == 1 else "successfully deleted vote"
    return json_response({"message": message}, status_code=status.HTTP_201_CREATED)
