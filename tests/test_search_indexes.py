"""Searches as people type them, exact on both databases; on PostgreSQL found through the grams
index (app/db/grams.py, revision 8c3f1b6e2a90): GRAMS_SEARCH reads every candidate of a rare
search, GRAMS_WALK walks a common one's time buckets newest first.

The feed: titles with and without punctuation or the searched words, then more plain posts
than the search window holds, so that every search here misses the window and asks the
whole table. The expected pages come from Python (`str.casefold` and `in` over every title),
not SQL.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import (
    IS_POSTGRESQL,
    Account,
    explain_execute,
    needs_postgresql,
    plan_estimates,
    plans_made,
    write_title_grams,
)
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from app.db import statements as queries
from app.db.backends import Prepared
from app.db.folding import fold
from app.db.grams import (
    BUCKET_SECONDS,
    FINE_BUCKET_SECONDS,
    bucket_elements,
    bucket_of,
    gram_hash,
    gram_pieces,
    grams,
    second_element,
    title_grams,
)
from app.domain.posts import (
    COMMON_QUIET_SAMPLE,
    GRAMS_PICKED,
    GRAMS_SEARCH_MAX,
    GRAMS_WALK_ABOVE,
    QUIET_SAMPLE,
    SECOND_MIN_RATE,
    SECOND_STEPS,
    SHORT_WALK_REACH,
    GramStatistics,
    SearchPlan,
    plan_search,
    with_bucket_posts,
    words_in_a_row,
)

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
    "ΣΊΣΥΦΟΣ and ﬁle",
]
SEARCHES = ["%", "_", "\\", "c:\\", "a_b", "%%", "__init__", "50% off", "über_straße", "ß%", ":", "'s", "[b", "x%"]
WORD_SEARCHES = ["kotlin nectar", "nectar kotlin", "kotlin nectar amber", "nectar amber again", "n nec", "ber stras"]
# One and two characters, a misspelling, random letters, a long paste, other scripts.
OTHER_SEARCHES = ["k", "zq", "ko", "kotlni", "xqzvw", "σίσυφος", "file", "ﬁ", "plain 1", "kotlin nectar amber " * 5]
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
    write_title_grams(sql)  # for the posts written and re-dated above, behind the API's back
    if IS_POSTGRESQL:
        sql.exec_driver_sql("ANALYZE posts")
    rows = sql.execute(text("SELECT id, title FROM posts ORDER BY created_at DESC, id DESC")).all()
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.forget()  # this feed's statistics and words, not an earlier test's
    yield Feed(reader, {row[0]: row[1] for row in rows})
    app_feed.forget()


def _ids(client: TestClient, reader: Account, **params: Any) -> list[int]:
    response = client.get("/posts/", params=params, headers=reader.headers)
    assert response.status_code == 200, response.text
    return [item["Post"]["id"] for item in response.json()]


def _expected(feed: Feed, search: str) -> list[int]:
    return [post_id for post_id, title in feed.titles.items() if search.casefold() in title.casefold()]


@pytest.mark.parametrize("search", SEARCHES + WORD_SEARCHES + OTHER_SEARCHES)
def test_a_search_finds_exactly_the_titles_holding_it(client: TestClient, feed: Feed, search: str) -> None:
    expected = _expected(feed, search)
    assert _ids(client, feed.reader, search=search, limit=100) == expected[:100]
    assert _ids(client, feed.reader, search=search, limit=2, skip=1) == expected[1:3]
    if expected:
        assert _ids(client, feed.reader, search=search, limit=100, before_id=expected[0]) == expected[1:101]


def test_the_cases_have_matches_and_misses(feed: Feed) -> None:
    """The table above is worth its name: most searches find several titles, some find none."""
    found = {search: len(_expected(feed, search)) for search in SEARCHES + WORD_SEARCHES + OTHER_SEARCHES}
    assert found["%"] == 4 and found["_"] == 4 and found["a_b"] == 2 and found["x%"] == 0, found
    assert found["kotlin nectar"] == 2 and found["nectar kotlin"] == 1 and found["kotlin nectar amber"] == 1, found
    assert found["zq"] == 0 and found["xqzvw"] == 0 and found["σίσυφος"] == 1 and found["ﬁ"] == 3, found
    assert found["plain 1"] > 100, found  # more than a page of 100


# --- the grams themselves ------------------------------------------------------------


@given(st.text(max_size=40), st.data())
def test_every_piece_of_a_substring_is_a_piece_of_the_text(title: str, data: st.DataObject) -> None:
    """Why the index never misses a match: a search's pieces are among every matching title's."""
    start = data.draw(st.integers(0, len(title)))
    end = data.draw(st.integers(start, len(title)))
    folded_title = fold(title)
    folded_search = fold(title[start:end]) if fold(title[start:end]) in folded_title else folded_title[start:end]
    assert gram_pieces(folded_search) <= gram_pieces(folded_title)
    assert set(grams(folded_search)) <= set(grams(folded_title))


def test_the_pieces_of_a_text() -> None:
    assert gram_pieces("amber basil") == {"amb", "mbe", "ber", "bas", "asi", "sil", "er ba", "ber bas"}
    assert gram_pieces("ab") == set() and gram_pieces("a b") == set() and gram_pieces("") == set()
    # Symbols: 1 and 2 characters too, and 5 and 7 centred on them.
    assert gram_pieces("%") == {"%"} and gram_pieces("a_b") == {"_", "a_", "_b", "a_b"}
    assert gram_pieces("c:\\temp") == {"c:", ":", ":\\", "\\", "\\t", "c:\\", ":\\t", "\\te", "tem", "emp", "c:\\te"}
    assert gram_pieces(fold("ΣΊΣΥΦΟΣ")) == {"σίσ", "ίσυ", "συφ", "υφο", "φοσ"}  # any script: 3 characters


def test_hashes_and_buckets_never_meet() -> None:
    """A piece's hash is 0 or more, a bucket's element below 0 (odd for 4,096 s, even for 16 s)."""
    assert all(0 <= gram_hash(piece) < 2**31 for piece in gram_pieces("any title at all: ½ ΣΊΣ 🙂"))
    moment = datetime(2026, 12, 4, 22, 0, 0, tzinfo=UTC)
    coarse, fine = bucket_elements(moment)
    assert coarse == -1 - 2 * bucket_of(moment) and fine == -2 - 2 * bucket_of(moment, FINE_BUCKET_SECONDS)
    assert coarse < 0 and fine < 0 and coarse % 2 == 1 and fine % 2 == 0
    assert bucket_of(moment, FINE_BUCKET_SECONDS) * FINE_BUCKET_SECONDS // BUCKET_SECONDS == bucket_of(moment)
    start = datetime.fromtimestamp(bucket_of(moment) * BUCKET_SECONDS, UTC)
    assert bucket_of(start) == bucket_of(start + timedelta(seconds=BUCKET_SECONDS, microseconds=-1))
    assert bucket_of(start - timedelta(microseconds=1)) == bucket_of(start) - 1
    assert title_grams("ab", moment) == bucket_elements(moment)


@needs_postgresql
def test_a_post_carries_its_grams_and_the_bucket_of_its_created_at(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    """PostgreSQL adds the buckets from now() at INSERT and from created_at on an edit, and its trigger the
    second of created_at (a post this recent): all as Python computes them."""
    author = make_account()
    post = client.post("/posts/", json={"title": "Kotlin Nectar", "content": "c"}, headers=author.headers).json()

    def stored() -> tuple[list[int], list[int]]:
        row = sql.execute(text("SELECT title_grams, created_at FROM posts WHERE id = :id"), {"id": post["id"]}).one()
        return row[0], [*title_grams(fold(title), row[1]), second_element(row[1])]

    title = "Kotlin Nectar"
    written, expected = stored()
    assert sorted(written) == sorted(expected)
    title = "ÜBER straße: 100%"
    client.put(f"/posts/{post['id']}", json={"title": title, "content": "c"}, headers=author.headers)
    written, expected = stored()
    assert sorted(written) == sorted(expected)
    client.patch(f"/posts/{post['id']}", json={"content": "only the content"}, headers=author.headers)
    assert sorted(stored()[0]) == sorted(expected)  # the title stayed, and so did its grams


# --- which statement, and the plans PostgreSQL keeps ---------------------------------------


def _statistics(holding: dict[str, float], *, unlisted: float = 5, posts: float = 1_000_000) -> GramStatistics:
    return GramStatistics({gram_hash(piece): count for piece, count in holding.items()}, unlisted, posts)


def test_the_rarest_pieces_go_to_the_index() -> None:
    common = {piece: 60_000.0 for piece in gram_pieces("kotlin nectar") if len(piece) <= 3}
    plan = plan_search("kotlin nectar", _statistics(common))
    assert len(plan.grams) == GRAMS_PICKED and plan.matches == 5  # pieces across the space: unlisted, rare
    assert {gram_hash("in ne"), gram_hash("lin nec")} <= set(plan.grams)  # the two pieces across the space
    assert plan.whole_table(keyset=False) == [queries.GRAMS_SEARCH[False]]
    # The walk asks a busy bucket for the rarest piece alone, a quiet one for the two rarest.
    rarest = {**common, "lin": 40.0, "nec": 900.0}
    walked = plan_search("kotlin nectar", _statistics(rarest, unlisted=5_000))
    assert walked.walk_grams == [gram_hash("lin"), gram_hash("nec")] == walked.grams[:2]
    assert plan_search("abc", _statistics({})).walk_grams == [gram_hash("abc")]  # one piece: that one
    assert not plan.window_may_fill(10)  # 5 matches in a million: none expected among the newest 500


def test_a_common_search_walks_and_then_reads_every_candidate_only_when_they_are_few() -> None:
    word = {piece: 60_000.0 for piece in gram_pieces("nectar")}
    plan = plan_search("nectar", _statistics(word))
    assert plan.matches == 60_000 and plan.window_may_fill(10) and plan.window_may_fill(30)
    assert not plan.window_may_fill(40)  # about 30 among the newest 500: a page at skip=30 is not expected there
    assert plan.whole_table(keyset=True) == [queries.GRAMS_WALK[True], queries.LIST_POSTS[True, True]]
    # A walk that comes up short within the first pages: the search is rare where the feed is newest
    # (a word in no title whose pieces are each common): every candidate, never a walk down the feed.
    for reach in (10, SHORT_WALK_REACH):
        assert plan.whole_table(keyset=True, reach=reach) == [queries.GRAMS_WALK[True], queries.GRAMS_SEARCH[True]]
    assert plan.whole_table(keyset=False, reach=SHORT_WALK_REACH + 1)[1] == queries.LIST_POSTS[True, False]
    # The walk lately came up short of this search's first page: every candidate at once, unless
    # what follows the walk is the planner's statement (the walk still bounds what that reads).
    assert plan.whole_table(keyset=False, reach=10, rare=True) == [queries.GRAMS_SEARCH[False]]
    assert plan.whole_table(keyset=False, reach=SHORT_WALK_REACH + 1, rare=True)[0] == queries.GRAMS_WALK[False]
    fewer = plan_search("nectar", _statistics({piece: GRAMS_SEARCH_MAX / 2 for piece in gram_pieces("nectar")}))
    assert fewer.whole_table(keyset=False) == [queries.GRAMS_WALK[False], queries.GRAMS_SEARCH[False]]
    # A deep page of a word in one title in 17: the time buckets, whose matches cost less than
    # the posts around them, even where the newest posts hold it as the statistics say.
    assert plan.whole_table(keyset=False, reach=410, head_typical=True)[0] == queries.GRAMS_WALK[False]
    # One in 5 (FEED_WALK_SHARE and more): a deep page the newest posts should hold goes down the
    # feed, unless the newest posts lately held fewer matches than that.
    very = plan_search("nectar", _statistics({piece: 200_000.0 for piece in gram_pieces("nectar")}))
    assert very.whole_table(keyset=False, reach=410, head_typical=True) == [queries.LIST_POSTS[True, False]]
    assert very.whole_table(keyset=False, reach=410, head_typical=False)[0] == queries.GRAMS_WALK[False]
    assert very.whole_table(keyset=False, reach=3_000, head_typical=True)[0] == queries.GRAMS_WALK[False]  # 15,000 deep
    # Two words: as common as the rarer by the statistics, but side by side far rarer: never down the feed.
    phrase = plan_search("nectar nectar", _statistics({piece: 60_000.0 for piece in gram_pieces("nectar nectar")}))
    assert phrase.matches == 60_000 and not phrase.one_word
    assert phrase.whole_table(keyset=False, reach=10, head_typical=True)[0] == queries.GRAMS_WALK[False]
    at_the_edge = SearchPlan(plan.grams, GRAMS_WALK_ABOVE, 1_000_000)
    assert at_the_edge.whole_table(keyset=False) == [queries.GRAMS_SEARCH[False]]


def test_three_words_in_a_row_are_as_rare_as_their_pairs_chained() -> None:
    """n(a b c) ~ n(a b) x n(b c) / n(b): each pair as common as its rarest piece across the space."""
    holding = {piece: 60_000.0 for piece in gram_pieces("amber basil cedar")}
    holding |= {"er ba": 400.0, "ber bas": 450.0, "il ce": 300.0, "sil ced": 800.0}
    statistics = _statistics(holding, unlisted=5_000)
    assert words_in_a_row("amber basil cedar", statistics) == pytest.approx(400 * 300 / 60_000)
    plan = plan_search("amber basil cedar", statistics)
    assert plan.matches == pytest.approx(2) and not plan.one_word  # not 300: the rarest piece bounds it only
    assert words_in_a_row("amber basil", statistics) is None  # a pair: its pieces across the space tell
    assert plan_search("amber basil", statistics).matches == 400
    assert words_in_a_row("amber ba cedar", statistics) is None  # "ba" alone has no piece to chain by


def test_a_search_walks_the_buckets_when_that_costs_less_than_every_candidate() -> None:
    """SearchPlan.candidates_first weighs the walk (buckets to the page, the matches it reads) against
    every candidate, by how many posts a bucket holds; without that, GRAMS_WALK_ABOVE decides."""
    pair = SearchPlan([1], 443, 1_000_000, bucket_posts=4_096)  # two words side by side, the benchmark's
    assert not pair.candidates_first(10)  # six buckets of 4,096 posts: 0.8 against 1.3 ms
    assert pair.whole_table(keyset=False, reach=10) == [queries.GRAMS_WALK[False], queries.GRAMS_SEARCH[False]]
    sparse = SearchPlan([1], 443, 1_000_000, bucket_posts=100)  # the same in a quiet feed: past WALK_BUCKETS
    assert sparse.candidates_first(10)
    assert sparse.whole_table(keyset=False, reach=10) == [queries.GRAMS_SEARCH[False]]
    few = SearchPlan([1], 100, 1_000_000, bucket_posts=4_096)  # 25 buckets for 100 candidates
    assert few.candidates_first(10)
    common = SearchPlan([1], GRAMS_SEARCH_MAX + 1, 1_000_000, bucket_posts=10)  # never every candidate at once
    assert not common.candidates_first(10)
    unknown = SearchPlan([1], 443, 1_000_000)
    assert unknown.candidates_first(10) and not SearchPlan([1], GRAMS_WALK_ABOVE + 1, 1_000_000).candidates_first(10)


@needs_postgresql
def test_the_posts_a_bucket_holds_are_counted_as_the_walk_meets_the_buckets(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    """FEED_BUCKETS: the newest WALK_BUCKETS time buckets that hold posts (empty stretches of time
    count for nothing) and their posts; the feed's statistics then hold the posts a bucket holds."""
    author = make_account()
    insert = text(
        "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
        "SELECT 'kotlin ' || i, 'kotlin ' || i, 'c', true, CAST(:start AS timestamptz) + i * interval '1 s', :owner_id "
        "FROM generate_series(1, :count) AS i"
    )
    for start, count in (("2024-01-01", 90), ("2024-06-01", 60), ("2025-01-01", 30)):  # ids in time order
        sql.execute(insert, {"start": start, "count": count, "owner_id": author.id})
    write_title_grams(sql)
    sql.exec_driver_sql("ANALYZE posts")
    assert tuple(sql.execute(queries.FEED_BUCKETS.statement).one()) == (3, 180)
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.forget()
    try:
        assert _ids(client, author, search="kotlin", limit=1) != []
        statistics = app_feed.gram_frequencies._statistics
        assert statistics is not None and statistics.bucket_posts == 60
    finally:
        app_feed.forget()
    # More buckets than the walk takes: only the newest WALK_BUCKETS count, with their posts.
    for hours in range(2, 2 * queries.WALK_BUCKETS + 1, 2):  # a bucket is 68 minutes
        later = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hours)
        sql.execute(insert, {"start": later.isoformat(), "count": 2, "owner_id": author.id})
    assert tuple(sql.execute(queries.FEED_BUCKETS.statement).one()) == (queries.WALK_BUCKETS, 2 * queries.WALK_BUCKETS)
    # Ids that do not follow the posts' times tell nothing: the bucket's posts stay unknown.
    unordered = with_bucket_posts(_statistics({}), {"buckets": 3, "posts": -40})
    assert unordered.bucket_posts is None and plan_search("kotlin", unordered).bucket_posts is None


def test_a_search_without_pieces_goes_to_the_planner() -> None:
    """One or two letters: nothing the index can narrow it by (the window first, when it may fill)."""
    for search in ("k", "zq", "a b"):
        plan = plan_search(search, _statistics({}))
        assert plan.grams == [] and plan.window_may_fill(10), search
        assert plan.whole_table(keyset=True) == [queries.LIST_POSTS[True, True]], search


def test_without_statistics_a_search_takes_the_bounded_path() -> None:
    """Never ANALYZEd: as if many matched (window, walk, then the planner); the longest pieces go."""
    plan = plan_search("kotlin nectar", None)
    assert math.isinf(plan.matches) and plan.window_may_fill(100)
    assert plan.whole_table(keyset=False) == [queries.GRAMS_WALK[False], queries.LIST_POSTS[True, False]]
    assert plan.whole_table(keyset=False, reach=10, head_typical=True) == [
        queries.GRAMS_WALK[False],
        queries.LIST_POSTS[True, False],  # how many candidates there are is not known
    ]
    assert len(plan.grams) == GRAMS_PICKED and {gram_hash("lin nec"), gram_hash("in ne")} <= set(plan.grams)


@needs_postgresql
def test_which_statement_asks_the_whole_table(client: TestClient, feed: Feed, statements: list[Prepared]) -> None:
    """By the statistics: a rare search goes to every candidate at once, without the window."""
    for search in ("c:\\", "kotlin nectar", "xqzvw", "σίσυφος"):
        _ids(client, feed.reader, search=search, limit=10)
        _ids(client, feed.reader, search=search, limit=10, before_id=next(iter(feed.titles)))
    assert [prepared for prepared in statements if prepared.searches] == [
        queries.GRAMS_SEARCH[False],
        queries.GRAMS_SEARCH[True],
    ] * 4
    assert statements.count(queries.GRAM_FREQUENCIES) == 1  # read once, then remembered


def _add_fillers(feed: Feed, sql: Connection) -> None:
    """20,000 more posts, older than the feed's, with their pieces; then ANALYZE."""
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'filler ' || i, 'filler ' || i, 'c', true, timestamptz '2019-01-01' + i * interval '1 min', "
            ":owner_id FROM generate_series(1, 20000) AS i"
        ),
        {"owner_id": feed.reader.id},
    )
    write_title_grams(sql)
    sql.exec_driver_sql("ANALYZE posts")


def _generic_plan(feed: Feed, sql: Connection, prepared: Prepared, values: dict[str, object]) -> str:
    """EXPLAIN of the plan PostgreSQL keeps for `prepared` once it plans it generically, on 20,000 more posts.

    `values` are SQL literals by parameter name; the viewer's and the cursor's are added.
    """
    _add_fillers(feed, sql)
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


def _grams_literal(search: str) -> str:
    return f"ARRAY{grams(search)[:GRAMS_PICKED]}"


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_the_generic_plan_reads_every_candidate_from_the_grams_index(feed: Feed, sql: Connection, keyset: bool) -> None:
    values: dict[str, object] = {"pattern": "'%filler 1%'", "grams": _grams_literal("filler 1")}
    plan = _generic_plan(feed, sql, queries.GRAMS_SEARCH[keyset], values)
    assert "CTE candidates" in plan and "ix_posts_title_grams" in plan, plan  # every candidate, then the page


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_the_generic_plan_walks_buckets_through_the_grams_index(feed: Feed, sql: Connection, keyset: bool) -> None:
    """Each bucket's matches come from the grams index, never from a walk down the feed that
    checks every title's grams (that was 850 ms a bucket on the benchmark's data)."""
    values: dict[str, object] = {"pattern": "'%filler%'", "walk_grams": f"ARRAY[{gram_hash('fil')}]", "scan": 100}
    values |= {"second_rate": 256, "quiet_sample": 64}
    plan = _generic_plan(feed, sql, queries.GRAMS_WALK[keyset], values)
    assert "Recursive Union" in plan and "Bitmap Index Scan on ix_posts_title_grams" in plan, plan
    assert "Filter: (title_grams @>" not in plan, plan
    # The bucket and the pieces as two keys of one index scan: the scan ends when either runs out;
    # the pieces are two for a quiet bucket, one for a busy one.
    cond = "Index Cond: ((title_grams @> ARRAY[steps.element]) AND (title_grams @> CASE WHEN steps.quiet THEN $"
    assert cond in plan, plan
    # A bucket's newest posts (`scan` of them) are read down the feed index, not sorted.
    assert "Index Scan Backward using ix_posts_created_at_id on posts newest" in plan, plan


@needs_postgresql
def test_a_cursor_no_one_can_page_from_reads_no_candidate(feed: Feed, sql: Connection) -> None:
    """GRAMS_SEARCH from a post that is gone checks the cursor once and reads nothing (the endpoint
    then answers 422), instead of comparing every candidate with a cursor that is not there."""
    prepared = queries.GRAMS_SEARCH[True]
    values: dict[str, object] = {"viewer_id": feed.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"limit": 10, "skip": 0, "before_id": -1, "pattern": "'%plain%'", "grams": _grams_literal("plain")}
    arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
    connection = sql.connection.driver_connection
    assert connection is not None
    connection.execute(f"PREPARE gone AS {prepared.asyncpg_sql}")
    try:
        plan = [row[0] for row in connection.execute(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE gone ({arguments})")]
    finally:
        connection.execute("DEALLOCATE gone")
    (scan,) = [line for line in plan if "Scan on posts (" in line]  # the candidates' (not the cursor's)
    assert "never executed" in scan, "\n".join(plan)


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_postgresql_plans_the_candidates_search_once_per_connection(feed: Feed, sql: Connection, keyset: bool) -> None:
    """GRAMS_SEARCH runs on a generic plan after its first executions, whatever the pieces: no planning per search."""
    write_title_grams(sql)
    sql.exec_driver_sql("ANALYZE posts")
    prepared = queries.GRAMS_SEARCH[keyset]
    connection = sql.connection.driver_connection
    assert connection is not None
    connection.execute(f"PREPARE candidates AS {prepared.asyncpg_sql}")
    try:
        values = {"viewer_id": feed.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'", "skip": 0}
        values |= {"limit": 10, "before_id": next(iter(feed.titles))}
        for search in ["filler 1", "kotlin nectar", "xqzvw", "filler", "c:\\", "needle", "50% off"]:
            values |= {"grams": _grams_literal(search), "pattern": f"'{queries.like_pattern(search)}'"}
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            connection.execute(f"EXECUTE candidates ({arguments})").fetchall()
        (generic, custom) = connection.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'candidates'"
        ).fetchone()
        # Why it is kept: even a plan made for the values does not see the pieces, so it
        # cannot look cheaper than the generic one (on a million posts it did, and every
        # search was planned again).
        connection.execute("SET plan_cache_mode = force_custom_plan")
        arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
        custom_plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE candidates ({arguments})"))
    finally:
        connection.execute("RESET plan_cache_mode")
        connection.execute("DEALLOCATE candidates")
    assert generic >= 2 and custom <= 5, (generic, custom)
    assert "title_grams @> $" in custom_plan and "title_grams @> '{" not in custom_plan, custom_plan


# --- a common word after a burst of posts that hold none of it ---------------------------------

COMMON = GRAMS_WALK_ABOVE + 500  # more matches than a search reads at once: it walks
NOISE = queries.SEARCH_WINDOW + 100  # the newest posts, none matching: the window holds no match
DENSE = queries.DENSE_BUCKET + 500  # matches in one 4,096-second bucket: walked 16 seconds at a time


@pytest.fixture(params=["spread", "dense"])
def burst(
    request: pytest.FixtureRequest, client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> Iterator[Feed]:
    """Posts holding "nectar", with ties on created_at and drafts; then NOISE newer posts that hold none of it.
    spread: COMMON of them, one every 150 s (across more buckets than WALK_BUCKETS), ids out of time order;
    dense: DENSE of them, ten a second (within one 4,096-second bucket), ids in time order as the API writes them."""
    author, reader = make_account(), make_account()
    common_start, noise_start = datetime(2024, 1, 1, 0, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    seconds: list[float]
    if request.param == "spread":
        # Pairs of posts share an instant; ids follow a shuffled order of instants; every 97th is a draft.
        seconds = [150 * ((i * 7919) % COMMON // 2 * 2) for i in range(1, COMMON + 1)]
    else:
        seconds = [i // 2 * 2 / 10 for i in range(1, DENSE + 1)]
    posts = [
        (f"kotlin nectar {i}", i % 97 != 0, common_start + timedelta(seconds=second))
        for i, second in enumerate(seconds, 1)
    ]
    posts += [(f"noise {i}", True, noise_start + timedelta(seconds=i)) for i in range(1, NOISE + 1)]
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "VALUES (:title, :title, 'c', :published, :created_at, :owner_id)"
        ),
        [
            {"title": title, "published": published, "created_at": created_at, "owner_id": author.id}
            for title, published, created_at in posts
        ],
    )
    write_title_grams(sql)
    if IS_POSTGRESQL:
        sql.exec_driver_sql("ANALYZE posts")
    rows = sql.execute(text("SELECT id, title FROM posts WHERE published ORDER BY created_at DESC, id DESC")).all()
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.forget()
    yield Feed(reader, {row[0]: row[1] for row in rows})
    app_feed.forget()


@pytest.mark.parametrize(
    "page",
    [
        {"limit": 10},
        {"limit": 100, "skip": 37},
        {"limit": 10, "skip": COMMON - 50},  # spread: past WALK_BUCKETS of buckets
        {"limit": 100, "skip": DENSE - 60},  # dense: the last, short page
    ],
)
def test_a_common_word_past_a_burst_pages_exactly(client: TestClient, burst: Feed, page: dict[str, int]) -> None:
    expected = _expected(burst, "nectar")
    skip, limit = page.get("skip", 0), page["limit"]
    assert _ids(client, burst.reader, search="nectar", **page) == expected[skip : skip + limit]


def test_a_common_word_past_a_burst_pages_exactly_by_cursor(client: TestClient, burst: Feed) -> None:
    expected = _expected(burst, "NECTAR")
    walked: list[int] = []
    before: dict[str, int] = {}
    while page := _ids(client, burst.reader, search="NECTAR", limit=100, **before):
        walked += page
        before = {"before_id": page[-1]}
    assert walked == expected


@needs_postgresql
def test_a_common_word_past_a_burst_walks_the_buckets(
    client: TestClient, burst: Feed, statements: list[Prepared]
) -> None:
    _ids(client, burst.reader, search="nectar", limit=10)
    _ids(client, burst.reader, search="nectar", limit=10, before_id=next(iter(burst.titles)))
    assert [prepared for prepared in statements if prepared.searches] == [
        queries.RECENT_SEARCH[False],  # common enough to try the window, which holds only the burst
        queries.GRAMS_WALK[False],
        # The window before a cursor is tried whatever the head held (here the cursor is in the burst).
        queries.RECENT_SEARCH[True],
        queries.GRAMS_WALK[True],
    ]
    statements.clear()
    below = _expected(burst, "nectar")[9]  # the last post of the first page: below the burst
    assert _ids(client, burst.reader, search="nectar", limit=10, before_id=below) == _expected(burst, "nectar")[10:20]
    assert [prepared for prepared in statements if prepared.searches] == [queries.RECENT_SEARCH[True]]


@needs_postgresql
@pytest.mark.parametrize("scan", [0, 1, 7, 64, 1_024])
def test_the_walk_pages_exactly_whatever_it_reads_down_the_feed(burst: Feed, sql: Connection, scan: int) -> None:
    """Each bucket's newest `scan` posts come down the feed index, the rest of it from the grams
    index: the rows of both, in order, are the exact page (from the head and from a cursor)."""
    expected = _expected(burst, "nectar")
    cursor = expected[25]
    connection = sql.connection.driver_connection
    assert connection is not None
    values: dict[str, object] = {"viewer_id": burst.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"pattern": "'%nectar%'", "walk_grams": f"ARRAY[{gram_hash('nec')}]", "scan": scan, "before_id": cursor}
    values |= {"second_rate": 256, "quiet_sample": 64}
    for keyset in (False, True):
        prepared = queries.GRAMS_WALK[keyset]
        connection.execute(f"PREPARE walk AS {prepared.asyncpg_sql}")
        try:
            start = expected.index(cursor) + 1 if keyset else 0
            for limit, skip in [(10, 0), (7, 3), (100, 37)]:
                values |= {"limit": limit, "skip": skip}
                arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
                walked = [row[0] for row in connection.execute(f"EXECUTE walk ({arguments})")]
                assert walked == expected[start + skip : start + skip + limit], (keyset, limit, skip)
        finally:
            connection.execute("DEALLOCATE walk")


def _candidates_rejected(plan: Any) -> int:
    """Posts an EXPLAIN (ANALYZE, FORMAT JSON) plan read from the grams index and then found not to match."""
    rejected = 0
    if plan.get("Alias") == "candidates":
        rejected += plan.get("Rows Removed by Filter", 0) * plan.get("Actual Loops", 1)
    return rejected + sum(_candidates_rejected(child) for child in plan.get("Plans", []))


@needs_postgresql
def test_a_quiet_bucket_is_asked_for_two_pieces(client: TestClient, burst: Feed, sql: Connection) -> None:
    """A burst that matches nothing but holds the search's rarest piece (`guitar` holds `tar`, a
    piece of `nectar`): its buckets are quiet, and asked for the two rarest pieces, so none of
    its posts is a candidate; asked for the rarest alone, every one is. The page is exact both ways."""
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'guitar ' || i, 'guitar ' || i, 'c', true, timestamptz '2026-01-01' + i * interval '10 ms', "
            ":owner_id FROM generate_series(1, 3000) AS i"
        ),
        {"owner_id": burst.reader.id},
    )
    write_title_grams(sql)
    expected = _expected(burst, "nectar")
    connection = sql.connection.driver_connection
    assert connection is not None
    values: dict[str, object] = {"viewer_id": burst.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"pattern": "'%nectar%'", "scan": 0, "second_rate": 256, "quiet_sample": 64, "limit": 10, "skip": 0}
    prepared = queries.GRAMS_WALK[False]
    connection.execute(f"PREPARE walk AS {prepared.asyncpg_sql}")
    try:
        rejected = {}
        for pieces in ([gram_hash("tar"), gram_hash("nec")], [gram_hash("tar")]):
            values["walk_grams"] = f"ARRAY{pieces}"
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            assert [row[0] for row in connection.execute(f"EXECUTE walk ({arguments})")] == expected[:10]
            (plan,) = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE walk ({arguments})").fetchone()
            rejected[len(pieces)] = _candidates_rejected(plan[0]["Plan"])
    finally:
        connection.execute("DEALLOCATE walk")
    assert rejected[2] == 0 and rejected[1] >= 3000, rejected  # with the rarest alone: every guitar


@needs_postgresql
def test_a_burst_spread_over_many_buckets_is_walked_a_bucket_at_a_time(
    client: TestClient, burst: Feed, sql: Connection, statements: list[Prepared]
) -> None:
    """More posts than DENSE_BUCKET, none matching, over more 16-second buckets than WALK_BUCKETS: the
    walk takes them as one 4,096-second step (its newest posts hold no match) and reaches the
    page; 16 seconds at a time, it ran out first and every candidate was read instead."""
    quiet = queries.DENSE_BUCKET + 400
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'quiet ' || i, 'quiet ' || i, 'c', true, timestamptz '2026-01-01' + i * interval '200 ms', "
            ":owner_id FROM generate_series(1, :quiet) AS i"
        ),
        {"owner_id": burst.reader.id, "quiet": quiet},
    )
    write_title_grams(sql)
    sql.exec_driver_sql("ANALYZE posts")
    assert quiet * 0.2 > queries.WALK_BUCKETS * FINE_BUCKET_SECONDS and quiet * 0.2 < BUCKET_SECONDS
    expected = _expected(burst, "nectar")
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.forget()
    assert _ids(client, burst.reader, search="nectar", limit=10) == expected[:10]
    assert [prepared for prepared in statements if prepared.searches] == [
        queries.RECENT_SEARCH[False],  # the newest posts are the quiet ones
        queries.GRAMS_WALK[False],  # and the walk finds the page past them
    ]


# --- a head written at hundreds of posts a second: one second at a time ------------------------

FAST = 500  # posts a second, for FAST_SECONDS: a 16-second bucket of 8,000 posts, a quarter matching
FAST_SECONDS = 16


def _fast_head(sql: Connection, owner_id: int, start: str) -> None:
    """FAST_SECONDS of FAST posts a second from `start` (an SQL timestamptz): every fourth is "nectar",
    every 89th of those a draft; then write_title_grams."""
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT t.title, t.title, 'c', i % 356 <> 0, "
            f"{start} + i * interval '1 second' / {FAST}, :owner_id FROM generate_series(1, :posts) AS i "
            "CROSS JOIN LATERAL (SELECT CASE WHEN i % 4 = 0 THEN 'fast nectar ' ELSE 'fast ' END || i AS title) AS t"
        ),
        {"owner_id": owner_id, "posts": FAST * FAST_SECONDS},
    )
    write_title_grams(sql)


@pytest.fixture
def fast(burst: Feed, make_account: Callable[..., Account], sql: Connection) -> Iterator[Feed]:
    """The burst's feed under two fast heads: one written before revision 3f7a9c2e5b18 (its posts hold no
    second), one after it (an hour from now), each FAST_SECONDS of FAST posts a second."""
    author = make_account()
    _fast_head(sql, author.id, "timestamptz '2026-01-01 00:00:00+00'")
    _fast_head(sql, author.id, "date_trunc('hour', now()) + interval '1 hour'")
    sql.exec_driver_sql("ANALYZE posts")
    rows = sql.execute(text("SELECT id, title FROM posts WHERE published ORDER BY created_at DESC, id DESC")).all()
    yield Feed(burst.reader, {row[0]: row[1] for row in rows})


@needs_postgresql
def test_posts_since_the_revision_hold_their_second(fast: Feed, sql: Connection) -> None:
    """The trigger adds the second of created_at to what any writer stores (here write_title_grams, as an
    older Agora writes: pieces and two buckets), for posts since the revision; older ones get none."""
    since = sql.execute(text("SELECT agora_second_buckets_since()")).scalar_one()
    rows = sql.execute(text("SELECT title_grams, created_at, title_folded FROM posts")).all()
    assert any(created_at >= since for _, created_at, _ in rows) and any(
        created_at < since for _, created_at, _ in rows
    )
    for stored, created_at, folded in rows:
        seconds = [second_element(created_at)] if created_at >= since else []
        assert sorted(stored) == sorted([*title_grams(folded, created_at), *seconds]), created_at


def _walk_candidates(plan: Any) -> int:
    """Rows an EXPLAIN (ANALYZE, FORMAT JSON) plan of GRAMS_WALK read from the grams index, over all steps."""
    read = 0
    if plan.get("Node Type") == "Bitmap Heap Scan":
        read += plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    return read + sum(_walk_candidates(child) for child in plan.get("Plans", []))


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
def test_a_fast_head_is_walked_a_second_at_a_time_and_pages_exactly(fast: Feed, sql: Connection, keyset: bool) -> None:
    """Pages of a word a quarter of a fast head holds: the same posts, in the same order, whether the walk
    takes its busy buckets a second at a time or 16 seconds at a time (`second_rate` 0), into the fast
    head written before the revision (whose posts hold no second) and on past it; a second at a time,
    a page reads a second's matches, not the 16-second bucket's 2,000."""
    expected = _expected(fast, "nectar")
    cursor = expected[3]
    connection = sql.connection.driver_connection
    assert connection is not None
    values: dict[str, object] = {"viewer_id": fast.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"pattern": "'%nectar%'", "walk_grams": f"ARRAY[{gram_hash('nec')}]", "scan": 0, "before_id": cursor}
    values["quiet_sample"] = 64
    prepared = queries.GRAMS_WALK[keyset]
    start = expected.index(cursor) + 1 if keyset else 0
    head = FAST * FAST_SECONDS // 4 * 88 // 89  # the published matches of one fast head
    connection.execute(f"PREPARE walk AS {prepared.asyncpg_sql}")
    try:
        read: dict[int, int] = {}
        for rate in (256, 0):
            pages = [(10, 0), (100, 37), (10, 300), (100, head - 50), (100, head + 300), (10, head + 1_990)]
            for limit, skip in pages:
                values |= {"limit": limit, "skip": skip, "second_rate": rate}
                arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
                walked = [row[0] for row in connection.execute(f"EXECUTE walk ({arguments})")]
                assert walked == expected[start + skip : start + skip + limit], (rate, limit, skip)
            values |= {"limit": 10, "skip": 300}
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            (plan,) = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE walk ({arguments})").fetchone()
            read[rate] = _walk_candidates(plan[0]["Plan"])
    finally:
        connection.execute("DEALLOCATE walk")
    # 125 matches a second: the page 310 deep is in the third second; the 16-second bucket holds 2,000
    # (less the drafts, which the index scan leaves out).
    assert read[256] <= 4 * FAST // 4 and read[0] >= 1_900, read


@needs_postgresql
def test_a_step_whose_newest_64_posts_miss_a_common_word_is_busy_when_128_hold_it(
    fast: Feed, make_account: Callable[..., Account], sql: Connection
) -> None:
    """100 posts without "nectar" on top of the fast head: looking at 64 posts, the step is quiet and
    reads its whole bucket's matches; looking at 128 (a common word's `quiet_sample`), it is busy
    and goes a second at a time. The page is the same."""
    author = make_account()
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT 'fast filler ' || i, 'fast filler ' || i, 'c', true, "
            "date_trunc('hour', now()) + interval '1 hour' + interval '16 seconds' + i * interval '1 ms', :owner_id "
            "FROM generate_series(1, 100) AS i"
        ),
        {"owner_id": author.id},
    )
    write_title_grams(sql)
    expected = _expected(fast, "nectar")
    connection = sql.connection.driver_connection
    assert connection is not None
    values: dict[str, object] = {"viewer_id": fast.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"pattern": "'%nectar%'", "walk_grams": f"ARRAY[{gram_hash('nec')}]", "scan": 0, "second_rate": 256}
    values |= {"limit": 10, "skip": 300}
    prepared = queries.GRAMS_WALK[False]
    connection.execute(f"PREPARE walk AS {prepared.asyncpg_sql}")
    try:
        read = {}
        for sample in (QUIET_SAMPLE, COMMON_QUIET_SAMPLE):
            values["quiet_sample"] = sample
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            assert [row[0] for row in connection.execute(f"EXECUTE walk ({arguments})")] == expected[300:310]
            (plan,) = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE walk ({arguments})").fetchone()
            read[sample] = _walk_candidates(plan[0]["Plan"])
    finally:
        connection.execute("DEALLOCATE walk")
    assert read[QUIET_SAMPLE] >= 1_900 and read[COMMON_QUIET_SAMPLE] <= 4 * FAST // 4, read


def test_the_second_rate_asks_for_a_few_steps_of_a_deep_page() -> None:
    """A busy step goes a second at a time from DENSE_BUCKET posts in 16 seconds, and for a deep page or a
    rarer word only where a second holds 1/SECOND_STEPS of the page's matches by the statistics; never
    for a page the step's scan down the feed reads (it stops there, however big the bucket)."""
    plan = SearchPlan(grams=[1], matches=60_000, posts=1_000_000, one_word=True)
    assert plan.walk_scan(10) and plan.second_rate(10) == 0  # the step's newest posts hold a first page
    assert plan.second_rate(100) == queries.DENSE_BUCKET // FINE_BUCKET_SECONDS == SECOND_MIN_RATE
    assert plan.second_rate(410) == math.ceil(410 / 0.06 / SECOND_STEPS)  # 855 posts a second
    assert SearchPlan(grams=[1], matches=math.inf, posts=math.inf).second_rate(410) == SECOND_MIN_RATE
    assert plan.second_rate(2**63) == 1_000_000  # a bound an integer parameter takes


def test_a_common_search_looks_at_more_of_a_step_before_calling_it_quiet() -> None:
    """128 posts for a word in 1/32 of the titles or more (64 of them miss a 6 % word 1.9 % of the time),
    64 for a rarer search (nearly every step is quiet for it, and the look reads the whole sample)."""
    assert SearchPlan(grams=[1], matches=60_000, posts=1_000_000).quiet_sample == COMMON_QUIET_SAMPLE == 128
    assert SearchPlan(grams=[1], matches=31_000, posts=1_000_000).quiet_sample == QUIET_SAMPLE == 64
    assert SearchPlan(grams=[1], matches=math.inf, posts=math.inf).quiet_sample == QUIET_SAMPLE


@needs_postgresql
def test_postgresql_plans_the_walk_once_per_connection(burst: Feed, sql: Connection) -> None:
    """GRAMS_WALK runs on a generic plan after its first executions, whatever the word and the scan:
    with the scan's length and pattern in view, each plan made for the values looked cheaper, and
    PostgreSQL planned the walk again every time (3 ms on the benchmark's data)."""
    viewer: dict[str, object] = {"viewer_id": burst.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    executions = [
        {**viewer, "limit": 10, "skip": 0, "pattern": f"'%{search}%'", "scan": scan}
        | {"second_rate": 256, "quiet_sample": 64}
        | {"walk_grams": f"ARRAY[{grams(search)[0]}]"}
        for search, scan in [("nectar", 25), ("kotlin", 0), ("noise", 40), ("nectar 1", 1_024), ("nec", 12)] * 2
    ]
    (generic, custom) = plans_made(sql, queries.GRAMS_WALK[False], executions)
    assert generic >= 2 and custom <= 5, (generic, custom)


@needs_postgresql
@pytest.mark.parametrize("keyset", [False, True])
@pytest.mark.parametrize("search", ["filler", "filler 1", "kotlin nectar", "50% off"])
def test_a_plan_made_for_the_values_of_a_search_expects_what_the_generic_plan_does(
    feed: Feed, sql: Connection, keyset: bool, search: str
) -> None:
    """GRAMS_SEARCH and GRAMS_WALK: no value of a search (pieces, pattern, scan, page) is in view of
    a plan made for it, which then expects what the generic plan does, node by node: else, after a
    run of rare phrases on one connection, PostgreSQL plans each search again. With the page's
    LIMIT in view, such plans expected fewer rows and looked cheaper; on the benchmark's data every
    walk of the phrase class was planned again (1.3 ms each, then 1.8 against 0.75 ms a walk)."""
    _add_fillers(feed, sql)
    pattern = f"'{queries.like_pattern(search)}'"
    values: dict[str, object] = {"viewer_id": feed.reader.id, "viewer_generation": 0, "viewer_jti": "'not-revoked'"}
    values |= {"skip": 0, "limit": 100, "before_id": next(iter(feed.titles)), "scan": 0 if " " in search else 40}
    values |= {"second_rate": 256, "quiet_sample": 64}
    values |= {"grams": _grams_literal(search), "pattern": pattern, "walk_grams": f"ARRAY{grams(search)[:1]}"}
    for prepared in (queries.GRAMS_SEARCH[keyset], queries.GRAMS_WALK[keyset]):
        custom_plan = explain_execute(sql, prepared, values, "force_custom_plan")
        assert pattern not in "\n".join(custom_plan)  # a LIKE of few matches: cheaper
        generic_plan = explain_execute(sql, prepared, values, "force_generic_plan")
        assert plan_estimates(custom_plan) == plan_estimates(generic_plan)


@needs_postgresql
def test_a_word_in_no_title_whose_pieces_are_common_reads_the_candidates_not_every_title(
    client: TestClient, make_account: Callable[..., Account], sql: Connection, statements: list[Prepared]
) -> None:
    """ "yarn": "yar" (yarrow) and "arn" (garnet) are each in half the titles, "yarn" in none. The walk
    comes up short; then every candidate (never the planner's walk down every title, which was a
    full scan and a 503 on the benchmark's data); and for a while no walk first."""
    author, reader = make_account(), make_account()
    each = GRAMS_WALK_ABOVE + 200
    sql.execute(
        text(
            "INSERT INTO posts (title, title_folded, content, published, created_at, owner_id) "
            "SELECT t, t, 'c', true, timestamptz '2024-01-01' + i * interval '1 s', :owner_id "
            "FROM generate_series(1, :each * 2) AS i, "
            "LATERAL (SELECT CASE WHEN i % 2 = 0 THEN 'yarrow ' ELSE 'garnet ' END || i AS t) AS title"
        ),
        {"owner_id": author.id, "each": each},
    )
    write_title_grams(sql)
    sql.exec_driver_sql("ANALYZE posts")
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    app_feed.forget()
    try:
        for _ in range(2):
            assert _ids(client, reader, search="yarn") == []
        assert _ids(client, reader, search="garnet 1", limit=3) == [
            post_id
            for (post_id,) in sql.execute(
                text("SELECT id FROM posts WHERE title LIKE 'garnet 1%' ORDER BY created_at DESC, id DESC LIMIT 3")
            )
        ]
    finally:
        app_feed.forget()
    assert [prepared for prepared in statements if prepared.searches][:4] == [
        queries.RECENT_SEARCH[False],  # common enough to look among the newest posts
        queries.GRAMS_WALK[False],  # common enough to walk: nothing in WALK_BUCKETS buckets
        queries.GRAMS_SEARCH[False],  # every candidate: titles holding both pieces (none here)
        queries.GRAMS_SEARCH[False],  # the walk came up short a moment ago: not again
    ]


@needs_postgresql
def test_a_deep_page_goes_down_the_feed_only_while_the_newest_posts_hold_the_word(
    client: TestClient, burst: Feed, statements: list[Prepared], sql: Connection
) -> None:
    """A feed walk steps over every post of a burst: one look at the newest posts says whether to take it."""
    expected = _expected(burst, "nectar")  # a page past the newest SEARCH_WINDOW posts: no window
    app_feed = client.app.state.feed  # type: ignore[attr-defined]
    for _ in range(2):
        assert _ids(client, burst.reader, search="nectar", limit=100, skip=450) == expected[450:550]
    searches = [prepared for prepared in statements if prepared.searches]
    assert searches[0] == queries.RECENT_SEARCH[False]  # the look: the newest posts are the burst, none "nectar"
    # Then the time buckets, or every candidate where the walk would cross more buckets than it may
    # (spread: 27 matches a bucket; SearchPlan.candidates_first): never down the feed; no second look.
    assert searches[1:] == [searches[1]] * 2 and searches[1] in (queries.GRAMS_WALK[False], queries.GRAMS_SEARCH[False])
    # Without the burst, the newest posts hold the word as its statistics say: down the feed.
    sql.execute(text("DELETE FROM posts WHERE title LIKE 'noise %'"))
    app_feed.sparse_searches.clear()
    statements.clear()
    for _ in range(2):
        assert _ids(client, burst.reader, search="nectar", limit=100, skip=450) == expected[450:550]
    assert [prepared for prepared in statements if prepared.searches] == [
        queries.RECENT_SEARCH[False],
        queries.LIST_POSTS[True, False],
        queries.LIST_POSTS[True, False],
    ]
