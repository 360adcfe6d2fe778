"""Rows into the response shapes of the course contract (JSON-ready dicts).

`shown_to`: who reads the answer when other people's email addresses are private
(`PUBLIC_EMAILS=false`): their own address stays visible to them, anyone else's is
null. None means addresses are public (the course's behaviour).
"""

from collections.abc import Mapping
from typing import Any


def owner_of(user: Mapping[str, Any]) -> dict[str, Any]:
    """The public view of an account, as embedded in posts."""
    return {"id": user["id"], "email": user["email"], "created_at": user["created_at"]}


def public_profile(user: Mapping[str, Any], shown_to: int | None) -> dict[str, Any]:
    """`GET /users/{id}`: the public view, the address withheld from others when they are private."""
    email = user["email"] if shown_to is None or shown_to == user["id"] else None
    return {"id": user["id"], "email": email, "created_at": user["created_at"]}


def owner_from(row: Mapping[str, Any], shown_to: int | None = None) -> dict[str, Any]:
    """The embedded owner, from a row that carries owner_email and owner_created_at."""
    owner_id = row["owner_id"]
    email = row["owner_email"] if shown_to is None or shown_to == owner_id else None
    return {"id": owner_id, "email": email, "created_at": row["owner_created_at"]}


def post_with_owner(row: Mapping[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """The flat post shape (`PostOut`): the post's columns plus its owner."""
    return {
        "id": row["id"],
        "title": row["title"],
        "content": row["content"],
        "published": row["published"],
        "created_at": row["created_at"],
        "owner_id": row["owner_id"],
        "owner": owner,
    }


def post_with_votes(row: Mapping[str, Any], shown_to: int | None = None) -> dict[str, Any]:
    """The list/detail shape (`PostWithVotes`), from a row of LIST_POSTS, OWNER_POSTS or POST_DETAIL."""
    return {"Post": post_with_owner(row, owner_from(row, shown_to)), "votes": row["votes"], "voted": row["voted"]}
