"""Search looks among the newest posts first (app/db/statements.py, RECENT_SEARCH): the page must be exact anyway.

The feed built here: one old "needle", then more "hay" posts than the window holds, then
three new "needle" posts. A needle search finds less than a page in the window; hay
searches cross the window's edge at chosen pages.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import IS_POSTGRESQL, Account, needs_postgresql, plans_made, write_title_grams
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.db import statements as queries
from app.db.backends import Prepared
from app.domain.posts import ExpiringSet

WINDOW = queries.SEARCH_WINDOW
HAY = WINDOW + 20


@dataclass
class Feed:
    author: Account
    reader: Account
    new_needles: list[int]  # newest first
    old_needle: int
    hay: list[int]  # newest first


def _ids(client: TestClient, reader: Account, **params: Any) -> list[int]:
    response = client.get("/posts/", params=params, headers=reader.headers)
    assert response.status_code == 200, response.text
    return [item["Post"]["id"] for item in response.json()]


@pytest.fixture
def feed(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> Iterator[Feed]:
    author, reader = make_account(), make_account()

    def post(title: str) -> int:
        response = client.post("/posts/", json={"title": title, "content": "c"}, headers=author.headers)
        assert response.status_code == 201, response.text
        post_id: int = response.json()["id"]
        return post_id

    old_needle = post("an old needle")
    sql.execute(text("UPDATE posts SET created_at = '2020-01-01 00:00:00' WHERE id = :id"), {"id": old_needle})
    # Hay post i is i seconds after 2021-01-01: older than the new needles, newer than the old one.
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "VALUES (:title, :title, 'c', true, :created_at, :owner_id)"
        ),
        [
            {
                "title": f"hay {i}",
                "created_at": f"2021-01-01 {i // 3600:02}:{i // 60 % 60:02}:{i % 60:02}",
                "owner_id": author.id,
            }
            for i in range(HAY)
        ],
    )
    hay = [
        row[0] for row in sql.execute(text("SELECT id FROM posts WHERE title LIKE 'hay %' ORDER BY created_at DESC"))
    ]
    new_needles = [post(f"a new needle {i}") for i in range(3)][::-1]
    write_title_grams(sql)  # for the posts written and re-dated above, behind the API's back
    if IS_POSTGRESQL:
        sql.exec_driver_sql("ANALYZE posts")
    client.app.state.feed.forget()  # type: ignore[attr-defined]
    yield Feed(author, reader, new_needles, old_needle, hay)
    client.app.state.feed.forget()  # type: ignore[attr-defined]


def test_a_rare_search_finds_posts_older_than_the_window(client: TestClient, feed: Feed) -> None:
    assert _ids(client, feed.reader, search="NEEDLE") == [*feed.new_needles, feed.old_needle]
    # Asked again (now known to be sparse), the same page.
    assert _ids(client, feed.reader, search="NEEDLE") == [*feed.new_needles, feed.old_needle]


@pytest.mark.parametrize(
    "skip",
    [
        0,
        WINDOW - 15,  # the window (3 needles, WINDOW - 3 hay) still holds the whole page
        WINDOW - 10,  # the page runs past the window's edge
        WINDOW + 5,  # the page lies beyond the window
        HAY - 5,  # the end of the matches: a short last page
    ],
)
def test_a_common_search_pages_exactly_across_the_window_edge(client: TestClient, feed: Feed, skip: int) -> None:
    assert _ids(client, feed.reader, search="hay", limit=10, skip=skip) == feed.hay[skip : skip + 10]


def test_keyset_search_pages_exactly_across_the_window_edge(client: TestClient, feed: Feed) -> None:
    walked: list[int] = []
    before: dict[str, int] = {}
    while page := _ids(client, feed.reader, search="hay", limit=90, **before):
        walked += page
        before = {"before_id": page[-1]}
    assert walked == feed.hay
    # After the newest hay post, the window holds hay only: the old needle lies beyond it.
    assert _ids(client, feed.reader, search="needle", before_id=feed.hay[0]) == [feed.old_needle]


def test_drafts_in_the_window_stay_hidden_and_the_page_stays_full(
    client: TestClient, feed: Feed, sql: Connection
) -> None:
    sql.execute(text("UPDATE posts SET published = false WHERE id IN (:a, :b)"), {"a": feed.hay[1], "b": feed.hay[3]})
    visible = [post_id for post_id in feed.hay if post_id not in (feed.hay[1], feed.hay[3])]
    assert _ids(client, feed.reader, search="hay", limit=10) == visible[:10]


def test_a_common_search_is_one_statement_on_the_window(
    client: TestClient, feed: Feed, statements: list[Prepared]
) -> None:
    _ids(client, feed.reader, search="hay", limit=10)
    assert [prepared for prepared in statements if prepared.searches] == [queries.RECENT_SEARCH[False]]


def test_a_rare_search_skips_the_window_once_it_came_up_short(
    client: TestClient, feed: Feed, statements: list[Prepared]
) -> None:
    """SQLite: the window, then the scan. PostgreSQL: its statistics say "needle" is too rare to
    fill a page among the newest posts, so it goes to the grams index at once."""
    whole_table = queries.GRAMS_SEARCH[False] if IS_POSTGRESQL else queries.LIST_POSTS[True, False]
    _ids(client, feed.reader, search="needle")
    searches = [prepared for prepared in statements if prepared.searches]
    assert searches == ([whole_table] if IS_POSTGRESQL else [queries.RECENT_SEARCH[False], whole_table])
    statements.clear()
    _ids(client, feed.reader, search="needle")
    assert [prepared for prepared in statements if prepared.searches] == [whole_table]


def test_a_page_beyond_the_window_does_not_try_it(client: TestClient, feed: Feed, statements: list[Prepared]) -> None:
    _ids(client, feed.reader, search="hay", limit=10, skip=WINDOW - 5)
    searches = [prepared for prepared in statements if prepared.searches]
    # PostgreSQL: the grams index, as SearchPlan.whole_table weighs it (a walk of its one time
    # bucket, or every candidate); SQLite: the scan.
    if IS_POSTGRESQL:
        assert searches[0] in (queries.GRAMS_WALK[False], queries.GRAMS_SEARCH[False]), searches
    else:
        assert searches == [queries.LIST_POSTS[True, False]]


def test_the_list_without_search_never_uses_the_window(
    client: TestClient, feed: Feed, statements: list[Prepared]
) -> None:
    _ids(client, feed.reader, limit=10)
    _ids(client, feed.reader, limit=7, skip=3)
    assert statements == [
        queries.feed_page(owner=False, keyset=False, limit=10, skip=0),
        queries.feed_page(owner=False, keyset=False, limit=7, skip=3),
    ]


def test_a_first_page_has_its_size_written_in(client: TestClient, feed: Feed, statements: list[Prepared]) -> None:
    """Without `skip`, a page of N posts runs the statement with LIMIT N, and is the same page."""
    for limit in (1, 10, 37, 100):
        assert _ids(client, feed.reader, limit=limit) == _ids(client, feed.reader, limit=limit, skip=0)
    assert _ids(client, feed.reader, limit=5, before_id=feed.hay[3]) == feed.hay[4:9]
    sizes = (1, 1, 10, 10, 37, 37, 100, 100)
    expected = [queries.feed_page(owner=False, keyset=False, limit=n, skip=0) for n in sizes]
    assert statements == [*expected, queries.feed_page(owner=False, keyset=True, limit=5, skip=0)]
    for prepared, size in zip(statements, (*sizes, 5), strict=True):
        assert f" LIMIT {size}) AS page" in prepared.asyncpg_sql and "OFFSET" not in prepared.asyncpg_sql
    with pytest.raises(ValueError, match="1 to 100"):
        queries.feed_page(owner=False, keyset=False, limit=101, skip=0)


@pytest.mark.parametrize(("limit", "skip", "reach"), [(10, 1, 16), (10, 22, 32), (3, 29, 32), (100, 413, 1024)])
def test_a_page_with_skip_has_its_size_and_reach_written_in(
    client: TestClient, feed: Feed, statements: list[Prepared], limit: int, skip: int, reach: int
) -> None:
    """With `skip`, the page is the same page, taken from the first `reach` posts (a power of two ≥ skip + limit)."""
    whole_feed = [*feed.new_needles, *feed.hay, feed.old_needle]
    assert _ids(client, feed.reader, limit=limit, skip=skip) == whole_feed[skip : skip + limit]
    authors_posts = [*feed.new_needles, *feed.hay, feed.old_needle]
    assert (
        _ids(client, feed.reader, limit=limit, skip=skip, owner_id=feed.author.id) == authors_posts[skip : skip + limit]
    )
    assert (
        _ids(client, feed.reader, limit=limit, skip=skip, before_id=feed.new_needles[0])
        == whole_feed[skip + 1 : skip + 1 + limit]
    )
    assert statements[:3] == [
        queries.feed_page(owner=owner, keyset=keyset, limit=limit, skip=skip)
        for owner, keyset in ((False, False), (True, False), (False, True))
    ]
    for prepared in statements[:3]:
        assert f" LIMIT {reach}) AS reachable" in prepared.asyncpg_sql
        assert f" LIMIT {limit} OFFSET $" in prepared.asyncpg_sql


def test_a_page_past_the_reach_bound_is_planned_for_its_values(
    client: TestClient, feed: Feed, statements: list[Prepared], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "MAX_REACH", 64)
    whole_feed = [*feed.new_needles, *feed.hay, feed.old_needle]
    assert _ids(client, feed.reader, limit=10, skip=54) == whole_feed[54:64]
    assert _ids(client, feed.reader, limit=10, skip=55) == whole_feed[55:65]
    assert statements == [
        queries.feed_page(owner=False, keyset=False, limit=10, skip=54),
        queries.LIST_POSTS[False, False],
    ]


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
@pytest.mark.parametrize("skips", [[0], [17, 18, 19, 20, 21, 22, 17]], ids=["first page", "skip"])
def test_postgresql_plans_a_feed_page_once_per_connection(
    feed: Feed, sql: Connection, keyset: bool, skips: list[int]
) -> None:
    """The feed's usual pages run on a generic plan after their first executions: no planning per request."""
    prepared = queries.feed_page(owner=False, keyset=keyset, limit=10, skip=skips[0])
    assert prepared is not None
    assert all(queries.feed_page(owner=False, keyset=keyset, limit=10, skip=skip) is prepared for skip in skips)
    values = {"viewer_id": feed.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values["before_id"] = feed.hay[0]
    executions = [{**values, "skip": skips[number % len(skips)]} for number in range(7)]
    (generic, custom) = plans_made(sql, prepared, executions)
    assert generic >= 2 and custom <= 5, (generic, custom)


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_postgresql_plans_the_window_once_per_connection(feed: Feed, sql: Connection, keyset: bool) -> None:
    """After its first executions, the window statement runs on a generic plan (no planning per search).

    On a table big enough for the plans to differ by word, as the whole-table statement's do.
    """
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT title, title, 'c', true, created_at, :owner_id FROM (SELECT (ARRAY['rust', 'python', 'kafka', "
            "'linux'])[1 + i % 4] || ' ' || (ARRAY['mango', 'tango', 'plum'])[1 + i % 3] || ' ' || i AS title, "
            "timestamptz '2019-01-01' + i * interval '1 second' AS created_at "
            "FROM generate_series(1, 60000) AS i) AS generated"
        ),
        {"owner_id": feed.reader.id},
    )
    sql.exec_driver_sql("ANALYZE posts")
    prepared = queries.RECENT_SEARCH[keyset]
    connection = sql.connection.driver_connection  # psycopg itself: no parameters, so "%" is plain text
    assert connection is not None
    connection.execute(f"PREPARE window_search AS {prepared.asyncpg_sql}")
    try:
        for word in ("%hay%", "%needle%", "%1%", "%nothing%", "%hay 5%", "%a%", "%hay%"):
            values = {"viewer_id": feed.reader.id, "pattern": f"'{word}'", "limit": 10, "skip": 0}
            values |= {"viewer_generation": 0, "viewer_jti": "'not-revoked'"}
            values["before_id"] = feed.hay[0]
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            connection.execute(f"EXECUTE window_search ({arguments})").fetchall()
        plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE window_search ({arguments})"))
    finally:
        connection.execute("DEALLOCATE window_search")
    pattern_position = prepared.parameter_names.index("pattern") + 1
    # A custom plan shows the word itself; the generic one, its parameter.
    assert f"${pattern_position}" in plan and "%hay%" not in plan, plan


def test_a_remembered_key_expires() -> None:
    now = [0.0]
    keys = ExpiringSet(seconds=60, max_keys=10, clock=lambda: now[0])
    keys.add("rare")
    now[0] = 59.9
    assert "rare" in keys and "other" not in keys
    now[0] = 60.0
    assert "rare" not in keys


def test_adding_a_key_again_restarts_its_time() -> None:
    now = [0.0]
    keys = ExpiringSet(seconds=60, max_keys=10, clock=lambda: now[0])
    keys.add("rare")
    now[0] = 50
    keys.add("rare")
    now[0] = 100
    assert "rare" in keys


def test_past_its_size_the_oldest_key_goes_first() -> None:
    keys = ExpiringSet(seconds=60, max_keys=3)
    for key in ("a", "b", "c"):
        keys.add(key)
    keys.add("a")  # now the newest
    keys.add("d")
    assert [key for key in ("a", "b", "c", "d") if key in keys] == ["a", "c", "d"]
