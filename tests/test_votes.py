"""Votes over HTTP: one per user and post, and what happens when sixteen arrive at once."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest
from conftest import Account, assert_error, misanswered
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text


def new_post(client: TestClient, account: Account, **fields: Any) -> int:
    response = client.post("/posts/", json={"title": "t", "content": "c", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def cast(
    client: TestClient, account: Account, post_id: object, direction: object, path: str = "/vote/"
) -> httpx.Response:
    return client.post(path, json={"post_id": post_id, "dir": direction}, headers=account.headers)


def vote_rows(sql: Connection) -> list[tuple[int, int]]:
    return [tuple(row) for row in sql.execute(text("SELECT user_id, post_id FROM votes ORDER BY user_id, post_id"))]


def votes_shown(client: TestClient, account: Account, post_id: int) -> int:
    return int(client.get(f"/posts/{post_id}", headers=account.headers).json()["votes"])


def all_at_once(count: int, request: Callable[[], httpx.Response]) -> list[int]:
    """Send `count` requests from as many threads, released together; their status codes."""
    barrier = threading.Barrier(count)

    def send(_: int) -> int:
        barrier.wait()
        return request().status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(send, range(count)))


def test_the_vote_cycle(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> None:
    author, voter = make_account(), make_account()
    post_id = new_post(client, author)

    added = cast(client, voter, post_id, 1)
    assert added.status_code == 201, added.text
    assert added.headers["content-type"].startswith("application/json")
    assert vote_rows(sql) == [(voter.id, post_id)]
    assert votes_shown(client, author, post_id) == 1

    assert_error(cast(client, voter, post_id, 1), 409)
    assert vote_rows(sql) == [(voter.id, post_id)]

    removed = cast(client, voter, post_id, 0)
    assert removed.status_code == 201, removed.text
    assert vote_rows(sql) == []
    assert votes_shown(client, author, post_id) == 0

    assert_error(cast(client, voter, post_id, 0), 404)

    # And a vote can be cast again after it was taken back.
    assert cast(client, voter, post_id, 1).status_code == 201
    assert votes_shown(client, author, post_id) == 1


def test_removing_a_vote_never_cast_is_404(client: TestClient, make_account: Callable[..., Account]) -> None:
    author, voter = make_account(), make_account()
    post_id = new_post(client, author)
    cast(client, author, post_id, 1)  # someone else's vote is not yours to take back
    assert_error(cast(client, voter, post_id, 0), 404)
    assert votes_shown(client, author, post_id) == 1


def test_votes_are_per_user(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> None:
    author, first, second = make_account(), make_account(), make_account()
    post_id = new_post(client, author)
    other_post = new_post(client, author)

    for voter in (first, second):
        assert cast(client, voter, post_id, 1).status_code == 201
    assert cast(client, first, other_post, 1).status_code == 201
    assert votes_shown(client, author, post_id) == 2

    assert cast(client, first, post_id, 0).status_code == 201
    assert vote_rows(sql) == sorted([(second.id, post_id), (first.id, other_post)])


def test_voting_on_a_missing_post_is_404(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    voter = make_account()
    existing = new_post(client, voter)
    missing = [existing + 1000, 2**31 - 1, 2**31, 2**40, 2**63 - 1]
    responses = {
        f"post {post_id} dir {direction}": cast(client, voter, post_id, direction)
        for post_id in missing
        for direction in (1, 0)
    }
    assert misanswered(404, responses) == {}
    assert vote_rows(sql) == []


def test_voting_on_a_deleted_post_is_404(client: TestClient, make_account: Callable[..., Account]) -> None:
    author, voter = make_account(), make_account()
    post_id = new_post(client, author)
    assert client.delete(f"/posts/{post_id}", headers=author.headers).status_code == 204
    assert_error(cast(client, voter, post_id, 1), 404)


def test_voting_on_someone_elses_draft_is_404(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    author, voter = make_account(), make_account()
    draft = new_post(client, author, published=False)
    assert_error(cast(client, voter, draft, 1), 404)
    assert_error(cast(client, voter, draft, 0), 404)
    assert vote_rows(sql) == []


def test_dir_must_be_0_or_1(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> None:
    voter = make_account()
    post_id = new_post(client, voter)
    directions: list[object] = [2, -1, 10**30, "1", "0", True, False, 1.0, 0.5, None, [1], {"v": 1}]
    assert misanswered(422, {repr(d): cast(client, voter, post_id, d) for d in directions}) == {}
    assert vote_rows(sql) == []


def test_post_id_must_be_an_integer_from_1_to_2_63_minus_1(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    voter = make_account()
    post_id = new_post(client, voter)
    post_ids: list[object] = [0, -1, 2**63, -(2**63), 10**30, str(post_id), float(post_id), True, None, [post_id]]
    assert misanswered(422, {repr(p): cast(client, voter, p, 1) for p in post_ids}) == {}
    assert vote_rows(sql) == []


def test_both_fields_are_required(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> None:
    voter = make_account()
    post_id = new_post(client, voter)
    bodies: list[dict[str, int]] = [{}, {"post_id": post_id}, {"dir": 1}]
    assert misanswered(422, {str(b): client.post("/vote/", json=b, headers=voter.headers) for b in bodies}) == {}
    assert vote_rows(sql) == []


@pytest.mark.parametrize("path", ["/vote", "/vote/"])
def test_vote_works_with_and_without_the_trailing_slash(
    client: TestClient, make_account: Callable[..., Account], path: str
) -> None:
    voter = make_account()
    post_id = new_post(client, voter)
    response = client.post(path, json={"post_id": post_id, "dir": 1}, headers=voter.headers, follow_redirects=False)
    assert response.status_code == 201, response.text
    response = client.post(path, json={"post_id": post_id, "dir": 0}, headers=voter.headers, follow_redirects=False)
    assert response.status_code == 201, response.text


def test_sixteen_identical_votes_at_once_count_once(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    author, voter = make_account(), make_account()
    post_id = new_post(client, author)

    statuses = all_at_once(16, lambda: cast(client, voter, post_id, 1))

    assert sorted(statuses) == [201] + [409] * 15
    assert vote_rows(sql) == [(voter.id, post_id)]


def test_sixteen_identical_retractions_at_once_remove_once(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    author, voter = make_account(), make_account()
    post_id = new_post(client, author)
    assert cast(client, voter, post_id, 1).status_code == 201

    statuses = all_at_once(16, lambda: cast(client, voter, post_id, 0))

    assert sorted(statuses) == [201] + [404] * 15
    assert vote_rows(sql) == []


def test_sixteen_users_voting_at_once_all_count(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    author = make_account()
    voters = [make_account() for _ in range(16)]
    post_id = new_post(client, author)
    pending = iter(voters)
    lock = threading.Lock()

    def next_voter() -> httpx.Response:
        with lock:
            voter = next(pending)
        return cast(client, voter, post_id, 1)

    assert all_at_once(16, next_voter) == [201] * 16
    assert votes_shown(client, author, post_id) == 16
    assert len(vote_rows(sql)) == 16
