"""Searches the trigram index cannot narrow well, on PostgreSQL found through an index that can:
punctuation (`%`, `_`, `\\`, `c:\\`: revision 5c1e9a7d2b44, statements.SYMBOL_SEARCH), and several
words (statements.WORDS_SEARCH). The pages must be exact on both databases.

The feed: titles with and without punctuation or the searched words, then more plain
posts than the search window holds, so that every search here misses the window and asks
the whole table. The expected pages come from Python (`str.casefold` and `in` over every
title), not SQL.
"""

import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import IS_POSTGRESQL, Account, needs_postgresql
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.db import statements as queries
from app.db.backends import Prepared
from app.db.folding import fold
from app.domain.posts import SYMBOL_CANDIDATES_MAX, narrowing_substrings, search_words

TITLES = [
    "50% off today",
    "100%",
    "a_b and more",
    "ab is not a_b? it is: a_b",
    "c:\\temp\\file",
    "c:/temp/file",
    "__init__.py",
    "one \\ backslash",
    "percent sign alone: %",
    "ÜBER_STRASSE 10%",
    "(parens) [brackets] {braces}",
    'it\'s a "quote"',
    "kotlin nectar",
    "nectar kotlin amber",
    "kotlin and nectar",
    "Kotlin Nectar Amber again",
    "kotlinnectar",
    "über straße",
]
SEARCHES = ["%", "_", "\\", "c:\\", "a_b", "%%", "__init__", "50% off", "über_straße", "ß%", ":", "'s", "[b", "x%"]
WORD_SEARCHES = ["kotlin nectar", "nectar kotlin", "kotlin nectar amber", "nectar amber again", "n nec", "ber stras"]
PLAIN = queries.SEARCH_WINDOW + 20


@dataclass
class Feed:
    reader: Account
    titles: dict[int, str]  # by id, newest first


@pytest.fixture
def feed(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> Iterator[Feed]:
    author, reader = make_account(), make_account()
    for number, title in enumerate(TITLES):
        response = client.post("/posts/", json={"title": title, "content": "c"}, headers=author.headers)
        assert response.status_code == 201, response.text
        # Older than the plain posts, and in a known order (one a minute).
        sql.execute(
            text("UPDATE posts SET created_at = :at WHERE id = :id"),
            {"at": f"2020-01-01 00:{number:02}:00", "id": response.json()["id"]},
        )
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "VALUES (:title, :title, 'c', true, :created_at, :owner_id)"
        ),
        [
            {"title": f"plain {i}", "created_at": f"2021-01-01 00:{i // 60 % 60:02}:{i % 60:02}", "owner_id": author.id}
            for i in range(PLAIN)
        ],
    )
    if IS_POSTGRESQL:
        sql.exec_driver_sql("ANALYZE posts")
    rows = sql.execute(text("SELECT id, title FROM posts ORDER BY created_at DESC, id DESC")).all()
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.sparse_searches.clear()
    app_feed.symbol_frequencies.forget()  # read again: this feed's statistics, not an earlier test's
    yield Feed(reader, {row[0]: row[1] for row in rows})
    app_feed.sparse_searches.clear()
    app_feed.symbol_frequencies.forget()


def _ids(client: TestClient, reader: Account, **params: Any) -> list[int]:
    response = client.get("/posts/", params=params, headers=reader.headers)
    assert response.status_code == 200, response.text
    return [item["Post"]["id"] for item in response.json()]


def _expected(feed: Feed, search: str) -> list[int]:
    return [post_id for post_id, title in feed.titles.items() if search.casefold() in title.casefold()]


@pytest.mark.parametrize("search", SEARCHES + WORD_SEARCHES)
def test_a_search_finds_exactly_the_titles_holding_it(client: TestClient, feed: Feed, search: str) -> None:
    expected = _expected(feed, search)
    assert _ids(client, feed.reader, search=search, limit=100) == expected
    assert _ids(client, feed.reader, search=search, limit=2, skip=1) == expected[1:3]
    if expected:
        assert _ids(client, feed.reader, search=search, limit=100, before_id=expected[0]) == expected[1:]


def test_the_cases_have_matches_and_misses(feed: Feed) -> None:
    """The table above is worth its name: most searches find several titles, some find none."""
    found = {search: len(_expected(feed, search)) for search in SEARCHES}
    assert found["%"] == 4 and found["_"] == 4 and found["a_b"] == 2 and found["x%"] == 0, found
    words = {search: len(_expected(feed, search)) for search in WORD_SEARCHES}
    assert words["kotlin nectar"] == 2 and words["nectar kotlin"] == 1 and words["kotlin nectar amber"] == 1, words


def test_the_words_that_narrow_a_search() -> None:
    assert search_words("kotlin nectar kotlin") == ["kotlin", "nectar"]
    assert search_words("a an the python rust") == ["python", "rust", "the"]
    assert search_words("c:\\temp\\file.txt") == ["temp", "file", "txt"]
    assert search_words(fold("Über Straße")) == ["strasse", "ber"]  # ASCII runs only: pg_trgm's words anywhere
    assert search_words("to be or") == [] and search_words("%_%") == []


def test_what_a_search_of_several_words_looks_up() -> None:
    assert narrowing_substrings("kotlin nectar") == ["kotlin", "nectar"]  # two words: whole
    assert narrowing_substrings("python rust golang kotlin") == ["yth", "ola", "otl"]  # more: a trigram of three
    assert narrowing_substrings("python") == ["python"]  # one word: LIST_POSTS, not WORDS_SEARCH


def test_which_statement_asks_the_whole_table(client: TestClient, feed: Feed, statements: list[Prepared]) -> None:
    """PostgreSQL: punctuation goes through its own index, letters alone through LIST_POSTS; SQLite scans."""
    _ids(client, feed.reader, search="c:\\", limit=10)
    _ids(client, feed.reader, search="temp", limit=10)
    _ids(client, feed.reader, search="%", limit=10, before_id=next(iter(feed.titles)))
    _ids(client, feed.reader, search="kotlin nectar", limit=10)
    _ids(client, feed.reader, search="nectar kotlin amber", limit=10, before_id=next(iter(feed.titles)))
    _ids(client, feed.reader, search="kotlin nectar", limit=10, skip=queries.SEARCH_WINDOW)  # deep: the planner's
    searches = [prepared for prepared in statements if prepared.searches]  # not the account checks between
    if IS_POSTGRESQL:
        assert searches == [
            queries.RECENT_SEARCH[False],
            queries.SYMBOL_SEARCH[False],
            queries.RECENT_SEARCH[False],
            queries.LIST_POSTS[True, False],
            queries.RECENT_SEARCH[True],
            queries.SYMBOL_SEARCH[True],
            queries.RECENT_SEARCH[False],
            queries.WORDS_SEARCH[2, False],
            queries.RECENT_SEARCH[True],
            queries.WORDS_SEARCH[3, True],
            queries.LIST_POSTS[True, False],
        ]
    else:
        assert set(searches) <= {*queries.RECENT_SEARCH.values(), *queries.LIST_POSTS.values()}


@needs_postgresql
def test_the_function_collects_ascii_punctuation_only(sql: Connection) -> None:
    # Then other punctuation: guillemets, dashes, curly quotes, fullwidth % and _.
    every_character = "".join(map(chr, range(1, 128))) + "«»¿¡€\u2013\u2014“”・\uff05\uff3f"
    found = sql.execute(text("SELECT agora_title_symbols(:title)"), {"title": every_character}).scalar_one()
    assert sorted(found) == sorted(string.punctuation)
    assert sql.execute(text("SELECT agora_title_symbols('plain words 42')")).scalar_one() == []


@needs_postgresql
def test_punctuation_most_titles_hold_is_found_by_walking_the_feed(
    client: TestClient, feed: Feed, sql: Connection, statements: list[Prepared]
) -> None:
    """By PostgreSQL's statistics: a character more than SYMBOL_CANDIDATES_MAX titles hold is not
    looked up through its index (every one of them would be read); a rare one still is."""
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'filler ' || i || '''s', 'filler ' || i || '''s', 'c', true, "
            "timestamptz '2019-01-01' + i * interval '1 s', :owner_id FROM generate_series(1, :count) AS i"
        ),
        {"owner_id": feed.reader.id, "count": SYMBOL_CANDIDATES_MAX + 5000},
    )
    sql.exec_driver_sql("ANALYZE posts")
    titles = sql.execute(text("SELECT id, title FROM posts ORDER BY created_at DESC, id DESC")).all()
    for search in ("'s", "%"):
        expected = [post_id for post_id, title in titles if search in title.casefold()][:10]
        assert _ids(client, feed.reader, search=search, limit=10) == expected
    assert [prepared for prepared in statements if prepared.searches] == [
        queries.RECENT_SEARCH[False],
        queries.LIST_POSTS[True, False],  # "'s": the window held none, and most titles hold "'"
        queries.RECENT_SEARCH[False],
        queries.SYMBOL_SEARCH[False],  # "%": a handful of titles
    ]
    assert statements.count(queries.SYMBOL_FREQUENCIES) == 1  # read once, then remembered


def _generic_plan(feed: Feed, sql: Connection, prepared: Prepared, values: dict[str, object]) -> str:
    """EXPLAIN of the plan PostgreSQL keeps for `prepared` once it plans it generically, on 50,000 more posts.

    `values` are SQL literals by parameter name; the viewer's and the cursor's are added.
    """
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'filler ' || i, 'filler ' || i, 'c', true, timestamptz '2019-01-01' + i * interval '1 s', "
            ":owner_id FROM generate_series(1, 50000) AS i"
        ),
        {"owner_id": feed.reader.id},
    )
    sql.exec_driver_sql("ANALYZE posts")
    values = {**values, "viewer_id": feed.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"limit": 10, "skip": 0, "before_id": next(iter(feed.titles))}
    arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
    connection = sql.connection.driver_connection  # psycopg itself: no parameters, so "%" is plain text
    assert connection is not None
    connection.execute("SET plan_cache_mode = force_generic_plan")
    connection.execute(f"PREPARE planned AS {prepared.asyncpg_sql}")
    try:
        return "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE planned ({arguments})"))
    finally:
        connection.execute("DEALLOCATE planned")
        connection.execute("RESET plan_cache_mode")


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_the_generic_plan_finds_candidates_through_the_symbols_index(feed: Feed, sql: Connection, keyset: bool) -> None:
    """The plan PostgreSQL keeps for SYMBOL_SEARCH uses ix_posts_title_symbols, whatever the characters."""
    values: dict[str, object] = {"pattern": "'%/%%'", "symbols": "ARRAY['%']"}
    plan = _generic_plan(feed, sql, queries.SYMBOL_SEARCH[keyset], values)
    assert "CTE candidates" in plan and "ix_posts_title_symbols" in plan, plan  # every candidate, then the page


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_the_generic_plan_finds_word_candidates_through_the_trigram_index(
    feed: Feed, sql: Connection, keyset: bool
) -> None:
    """The plan PostgreSQL keeps for WORDS_SEARCH takes its candidates from ix_posts_title_folded_trgm."""
    values: dict[str, object] = {"pattern": "'%kotlin nectar%'", "word_1": "'%kotlin%'", "word_2": "'%nectar%'"}
    plan = _generic_plan(feed, sql, queries.WORDS_SEARCH[2, keyset], values)
    assert "CTE candidates" in plan and "ix_posts_title_folded_trgm" in plan, plan  # every candidate, then the page
