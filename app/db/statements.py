"""SQL statements, built once at import; `python -m app.db.statements` prints them all.

Building a `select()` costs more than running it on a warm connection, so the
request path only binds parameters. Reads return plain rows (no ORM entities).
Statements marked `proves_viewer` return no row (and change nothing) unless the
caller's account exists: the only ones `Viewer.fetch` runs (app/domain/viewer.py).
docs/statements.sql holds what this module prints (a test keeps it in sync).
"""

import functools
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable, FromClause, Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect
from sqlalchemy.types import TypeEngine

from app.db.backends import Prepared
from app.db.grams import BUCKET_SECONDS, FINE_BUCKET_SECONDS, bucket_elements_sql, second_element_sql
from app.db.models import Post, RevokedToken, User, Vote

users = cast(Table, User.__table__)
posts = cast(Table, Post.__table__)
votes = cast(Table, Vote.__table__)
revoked_tokens = cast(Table, RevokedToken.__table__)

# Escape character for LIKE: "/" needs no quoting in any SQL dialect.
LIKE_ESCAPE = "/"


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with %, _ and / taken literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"


def matches_folded(source: FromClause) -> ColumnElement[bool]:
    """The post's folded title contains the search (`pattern`: `like_pattern(fold(search))`).

    The same SQL on both databases; the folding is done by the application on both
    sides (app/db/folding.py). PostgreSQL finds candidates through the grams index
    (`title_grams`, app/db/grams.py).
    """
    return source.c.title_folded.like(bindparam("pattern", type_=String), escape=LIKE_ESCAPE)


# --- users -------------------------------------------------------------------


def _token_counts(account: FromClause) -> ColumnElement[bool]:
    """`account` is the caller's, and the caller's token still counts.

    A valid signature proves neither: the account may have been deleted, its token
    generation moved on (a password change, "log out everywhere"), or this very token
    logged out. Every statement a protected endpoint runs carries this check, so it costs
    no round trip of its own and a remembered token is refused as soon as it is revoked.
    """
    return and_(
        account.c.id == bindparam("viewer_id"),
        account.c.token_generation == bindparam("viewer_generation"),
        ~exists().where(revoked_tokens.c.jti == bindparam("viewer_jti")),
    )


_ACCOUNT_COLUMNS = (users.c.id, users.c.email, users.c.created_at, users.c.phone_number)
USER_BY_ID = Prepared.of(select(*_ACCOUNT_COLUMNS).where(users.c.id == bindparam("user_id")))
# The caller's own account: no row when it is gone or the token no longer counts.
VIEWER_ACCOUNT = Prepared.of(select(*_ACCOUNT_COLUMNS).where(_token_counts(users)), proves_viewer=True)
# What a password confirmation checks against (changing the password, deleting the account).
VIEWER_PASSWORD = Prepared.of(select(users.c.id, users.c.password).where(_token_counts(users)), proves_viewer=True)
# Emails are unique and compared case-insensitively (a unique index on lower(email)).
# Both sides go through the database's lower(), so an address always matches itself
# even where SQLite's lower() leaves non-ASCII letters alone.
USER_FOR_LOGIN = Prepared.of(
    select(users.c.id, users.c.password, users.c.token_generation).where(
        func.lower(users.c.email) == func.lower(bindparam("email"))
    )
)
# bcrypt hashes look like `$2b$12$...`: the two digits after the second `$` are the cost.
MAX_BCRYPT_ROUNDS = Prepared.of(
    text("SELECT max(CAST(substr(password, 5, 2) AS INTEGER)) AS rounds FROM users WHERE password LIKE '$2_$__$%'")
)
# A rehash at login (bcrypt to Argon2id): the same password, so tokens keep counting.
SET_PASSWORD_HASH = Prepared.of(
    update(users).where(users.c.id == bindparam("user_id")).values(password=bindparam("new_hash"))
)

# Self-service. Each changes the caller's account only while the caller's token counts,
# in one statement: a token revoked meanwhile changes nothing (and gets 401).
UPDATE_PHONE_NUMBER = Prepared.of(
    update(users)
    .where(_token_counts(users))
    .values(phone_number=bindparam("phone_number", type_=String))
    .returning(*_ACCOUNT_COLUMNS),
    proves_viewer=True,
)
_NEXT_GENERATION = users.c.token_generation + literal_column("1", Integer)
# A new password refuses every token issued before it: the generation moves on with it.
CHANGE_PASSWORD = Prepared.of(
    update(users)
    .where(_token_counts(users))
    .values(password=bindparam("new_hash", type_=String), token_generation=_NEXT_GENERATION)
    .returning(users.c.id),
    proves_viewer=True,
)
LOG_OUT_EVERYWHERE = Prepared.of(
    update(users).where(_token_counts(users)).values(token_generation=_NEXT_GENERATION).returning(users.c.id),
    proves_viewer=True,
)
# Its posts and votes go with it (ON DELETE CASCADE), and so do the votes on its posts.
DELETE_ACCOUNT = Prepared.of(delete(users).where(_token_counts(users)).returning(users.c.id), proves_viewer=True)


# One statement per dialect: ON CONFLICT DO NOTHING makes a duplicate a non-event we
# can answer 409 to, instead of an exception (and it holds under concurrent requests).
def _insert_user(dialect: Any) -> Executable:
    insert_user = dialect.insert(users).values(
        email=bindparam("email"), password=bindparam("password"), phone_number=bindparam("phone_number")
    )
    insert_user = insert_user.on_conflict_do_nothing()
    return cast(Executable, insert_user.returning(users.c.id, users.c.email, users.c.created_at, users.c.phone_number))


INSERT_USER = Prepared.of(_insert_user(sqlite), postgresql_statement=_insert_user(postgresql))

# --- posts -------------------------------------------------------------------


def _visible_to_viewer(source: FromClause) -> ColumnElement[bool]:
    """Published, or the viewer's own draft."""
    return or_(source.c.published, source.c.owner_id == bindparam("viewer_id"))


# What a post read returns: its columns but those only searches use.
SEARCH_COLUMNS = ("title_folded", "title_grams")
POST_COLUMNS = tuple(column.name for column in posts.c if column.name not in SEARCH_COLUMNS)
VISIBLE_TO_VIEWER = _visible_to_viewer(posts)
NEWEST_FIRST = (posts.c.created_at.desc(), posts.c.id.desc())


_viewer = users.alias("viewer")
# The caller's account still exists and the token still counts (its signature alone proves neither).
VIEWER_EXISTS = exists().where(_token_counts(_viewer))


def _posts_with_owner_and_votes(page: Select[Any], *, searches: bool = False) -> Prepared:
    """Join the owner and count the votes of an already filtered (and paged) set of posts.

    The viewer's account is checked in the same round trip: no rows come back if it
    is gone, and only then does the endpoint look again to tell 401 from "no posts".
    `searches`: the page matches titles (`matches_folded`), and runs under SEARCH_TIMEOUT_MS.
    """
    subquery = page.subquery("page")
    vote_count = select(func.count()).select_from(votes).where(votes.c.post_id == subquery.c.id).scalar_subquery()
    # One probe of the votes' primary key (user_id, post_id) per post of the page. A scalar
    # subquery, not EXISTS: PostgreSQL turned the EXISTS into a hashed subplan that read
    # every vote the viewer ever cast (500 on the benchmark's data, each page) to answer 10.
    voted = (
        select(literal_column("1", Integer))
        .where(votes.c.user_id == bindparam("viewer_id"), votes.c.post_id == subquery.c.id)
        .scalar_subquery()
        .is_not(None)
    )
    return Prepared.of(
        select(
            subquery,
            users.c.email.label("owner_email"),
            users.c.created_at.label("owner_created_at"),
            vote_count.label("votes"),
            voted.label("voted"),
        )
        .join(users, users.c.id == subquery.c.owner_id)
        .where(VIEWER_EXISTS)
        .order_by(subquery.c.created_at.desc(), subquery.c.id.desc()),
        proves_viewer=True,
        replica_ok=True,  # a hot standby may answer (app/db/replicas.py)
        searches=searches,
    )


def _post_page(
    *,
    search: bool,
    keyset: bool,
    owner: bool = False,
    window: int | None = None,
    first: int | None = None,
    reach: int | None = None,
) -> Select[Any]:
    """The visible posts of one page, newest first; `owner`: only those of `owner_id`;
    `window`: only among the newest `window` posts; `first`: the first `first` of them,
    a literal LIMIT and no OFFSET, or with `reach`, the `first` after `skip` among the
    first `reach` (see `feed_page`)."""
    source: FromClause = posts
    if window is not None:
        recent = select(*(posts.c[name] for name in POST_COLUMNS), posts.c.title_folded)
        if keyset:
            recent = recent.where(_after_cursor(posts))
        # A literal, not a parameter: it is what makes the generic plan good (see RECENT_SEARCH).
        source = recent.order_by(*NEWEST_FIRST).limit(literal_column(str(window), Integer)).subquery("recent")
    page = select(*(source.c[name] for name in POST_COLUMNS)).where(_visible_to_viewer(source))
    if owner:
        page = page.where(source.c.owner_id == bindparam("owner_id"))
    if search:
        page = page.where(matches_folded(source))
    if keyset and window is None:
        page = page.where(_after_cursor(source))
    page = page.order_by(source.c.created_at.desc(), source.c.id.desc())
    if first is None:
        return page.limit(bindparam("limit")).offset(bindparam("skip"))
    if reach is None:
        return page.limit(literal_column(str(first), Integer))
    reachable = page.limit(literal_column(str(reach), Integer)).subquery("reachable")
    return (
        select(*(reachable.c[name] for name in POST_COLUMNS))
        .order_by(reachable.c.created_at.desc(), reachable.c.id.desc())
        .limit(literal_column(str(first), Integer))
        .offset(bindparam("skip"))
    )


def _cursor_created_at() -> ColumnElement[Any]:
    """When the cursor post was written, if the viewer may see it (NULL if not)."""
    cursor = posts.alias("cursor")
    return (
        select(cursor.c.created_at)
        .where(cursor.c.id == bindparam("before_id"))
        .where(_visible_to_viewer(cursor))
        .scalar_subquery()
    )


def _after_cursor(source: FromClause) -> ColumnElement[bool]:
    """Strictly after the cursor post in feed order: an index range, however deep."""
    return tuple_(source.c.created_at, source.c.id) < tuple_(_cursor_created_at(), bindparam("before_id"))


# Paging happens before counting: only the posts of the page have their votes counted.
# Keyed by (search, keyset).
LIST_POSTS = {
    (search, keyset): _posts_with_owner_and_votes(_post_page(search=search, keyset=keyset), searches=search)
    for search in (False, True)
    for keyset in (False, True)
}

# A search first looks among the newest SEARCH_WINDOW posts (after the cursor, if any).
# Why: LIST_POSTS[True, ...] is planned anew on every execution, because the best plan
# depends on the word (a rare one is best found through an index, a common one by
# walking the feed index), and PostgreSQL spent more time planning it than running it.
# This statement has one good plan for every word (walk at most SEARCH_WINDOW rows of the
# feed index), so after five executions PostgreSQL keeps one generic plan per connection
# and stops planning it (tests/test_search_window.py checks this). When the window holds
# a full page, that page is exactly the page of the whole table (the window is its
# newest part); when it does not (a rare word, a deep page, the end of the matches), the
# endpoint asks the whole table (app/domain/posts.py, `SearchPlan.whole_table`).
SEARCH_WINDOW = 500
RECENT_SEARCH = {
    keyset: _posts_with_owner_and_votes(_post_page(search=True, keyset=keyset, window=SEARCH_WINDOW), searches=True)
    for keyset in (False, True)
}


def _candidates_page(*narrowing: ColumnElement[bool], keyset: bool) -> Select[Any]:
    """The page among the visible posts that meet `narrowing` (conditions an index answers),
    each candidate then checked exactly against the search (`matches_folded`)."""
    found = select(*(posts.c[name] for name in POST_COLUMNS), posts.c.title_folded).where(*narrowing, VISIBLE_TO_VIEWER)
    if keyset:
        # The cursor checked once first: without a post to page from, no candidate is read
        # (each would be compared with NULL: 7 ms for a common word on the benchmark's data).
        found = found.where(_cursor_created_at().is_not(None), _after_cursor(posts))
    # MATERIALIZED: every candidate first, then the page. Without it, the page's ORDER BY and
    # LIMIT tempt the planner to walk the feed index instead, which reads every title when
    # the candidates are few (the generic plan cannot tell how few). The exact match is
    # checked on the candidates, outside: inside, a generic plan may take another index
    # for it (the trigram index of an earlier revision did, and read every title).
    candidates = found.cte("candidates").prefix_with("MATERIALIZED")
    # The pattern and the page's bounds come through subqueries, as the pieces do (HOLDS_THE_GRAMS):
    # a plan made for their values looked cheaper than the generic one for a rare phrase (a LIMIT
    # of 10 rows, a LIKE of few matches), and after a few such searches PostgreSQL planned every
    # search of the connection again (0.2 ms each on the benchmark's data).
    return (
        select(*(candidates.c[name] for name in POST_COLUMNS))
        .where(candidates.c.title_folded.like(_hidden("pattern", String()), escape=LIKE_ESCAPE))
        .order_by(candidates.c.created_at.desc(), candidates.c.id.desc())
        .limit(_hidden("limit", Integer()))
        .offset(_hidden("skip", Integer()))
    )


def _hidden(name: str, type_: TypeEngine[Any]) -> ScalarSelect[Any]:
    """Parameter `name` as a scalar subquery: no plan sees its value, so a plan PostgreSQL makes for
    the values costs what its generic plan does, and it keeps the generic one."""
    return select(bindparam(name, type_=type_)).scalar_subquery()


# The title holds every piece of the search given (`grams`, an integer[] of app/db/grams.py's
# hashes): ix_posts_title_grams (PostgreSQL only) answers it. The pieces come through a
# subquery so that no plan sees their values: a custom plan then costs what the generic one
# does, and PostgreSQL keeps the generic plan (the same plan: the index, every candidate,
# the page) instead of planning every search again (0.83 against 1.06 ms a search, on average
# over rare phrases, misspellings and long searches on the benchmark's data).
HOLDS_THE_GRAMS = posts.c.title_grams.op("@>")(
    select(bindparam("grams", type_=postgresql.ARRAY(Integer))).scalar_subquery()
)

# How often each piece is in a title, from PostgreSQL's statistics of `title_grams` (ANALYZE
# keeps the most common elements of the arrays, each with the share of rows holding it,
# then the least and greatest of those shares), and how many posts there are.
GRAM_FREQUENCIES = Prepared.of(
    text(
        "SELECT most_common_elems::text::integer[] AS grams, most_common_elem_freqs AS frequencies, "
        "(SELECT reltuples FROM pg_class WHERE relname = 'posts') AS posts "
        "FROM pg_stats WHERE tablename = 'posts' AND attname = 'title_grams'"
    )
)

# A search, on PostgreSQL, whose matches the statistics call few: the page among every title
# holding its rarest pieces, each candidate checked exactly. Keyed by keyset.
GRAMS_SEARCH = {
    keyset: _posts_with_owner_and_votes(_candidates_page(HOLDS_THE_GRAMS, keyset=keyset), searches=True)
    for keyset in (False, True)
}

# A search whose matches are many but may all be old (a common word after a burst of posts
# that hold none of it), on PostgreSQL: walk the time buckets that hold posts, newest first
# (`steps`), and take each bucket's matches from the grams index, by the bucket's element
# together with the search's pieces. Each step starts at the newest post older than the
# last (one probe of the feed index), so empty stretches of time cost nothing, and takes
# its 4,096-second bucket, or when that holds more than DENSE_BUCKET posts (told by the
# ids of its newest post and of the newest post before it: two more probes), its
# 16-second bucket, so that no step reads more than a few thousand posts' matches. The
# nested loop stops as soon as LIMIT has its rows, so a page costs the steps up to the one
# that fills it, however many newer posts hold none of its matches; WALK_BUCKETS bounds the
# walk (a search whose pieces are common but which itself is rare), and fewer rows than
# the page send the caller to an exact statement that reads every candidate
# (app/domain/posts.py). The rows come out step after step, each step's newest first: the
# feed's order (a step keeps only its own stretch, `lower` to `newest`, of its bucket).
# `OFFSET 0` keeps each bucket's candidates behind a fence: without it, the planner may walk
# the feed index backwards through the bucket instead and check every title (850 ms a bucket
# on the benchmark's data). The bucket and the pieces (`walk_grams`) are two conditions, not
# one array: GIN then scans them as two keys and stops when either has no more posts, so a
# bucket of thousands of posts none of which holds the pieces costs a few page reads. As one
# array, GIN steps through every post of its rarest element, the bucket (0.59 against 0.10
# ms for 9,420 posts of a burst on the benchmark's data). A step keeps at most skip + limit
# rows (no later row of it can be on the page), so its sort keeps only those.
# A step asks the index for the search's rarest piece, and a quiet one (below) for the two
# rarest (`walk_grams`): a burst of posts that match nothing may still hold the rarest piece
# (`egret`, on the benchmark's burst, holds `gre`, the rarest piece of `postgres` by the
# statistics of before it), and each of its posts is then a candidate to read and reject
# (1,668 of them a 16-second bucket). Two pieces rarely meet in such posts; in a busy step,
# a second piece narrows little and costs its posting list.
# A bucket's matches all come from the index, and all are read and sorted, however few the
# page needs: where a bucket holds many (1,296 of a 16-second bucket of 22,779 posts that the
# create scenario wrote, on the benchmark's data), that is most of the walk. So a step first
# reads its `scan` newest posts down the feed index (`scan` from the search's statistics:
# twice the posts that hold the page; 0: none), when its newest `quiet_sample` posts hold a
# match (not when they are a burst of posts on something else: there the index finds nothing
# at the cost of a few page reads), and the index answers for the rest of the bucket only,
# older than the last post read (`scanned_to`); the two parts, in this order, are the step's
# rows in the feed's order, and LIMIT stops before the index part when the scan filled the
# page. Keyed by keyset.
# A quiet stretch (the step's newest `quiet_sample` posts hold no match: a burst, or an hour of
# posts on something else) is taken 4,096 seconds at a time up to QUIET_BUCKET posts: there
# the index reads the bucket's few matches, and 16-second steps through a burst spread over
# an hour ran out of WALK_BUCKETS before they reached a match. Above QUIET_BUCKET, a bucket
# may hold a busy hour's matches under the quiet ones, all of which the index would read.
# `quiet_sample` is a value of the search (SearchPlan.quiet_sample): a busy bucket's newest
# posts hold none of a common word now and then (64 posts, a word in 6 % of them: 1.9 % of
# the time), and the step then reads all its matches.
WALK_BUCKETS = 32
DENSE_BUCKET = 4096
QUIET_BUCKET = 32_768
RATE_SAMPLE = 64


# A busy step (not quiet, not sparse) is taken one second at a time (the element of revision
# 3f7a9c2e5b18) where the feed is written at `second_rate` posts a second or more (a value of
# the search, SearchPlan.second_rate): its newest RATE_SAMPLE posts are written within
# RATE_SAMPLE / second_rate seconds, which one probe of the feed index tells from the posts
# themselves (counting by ids would take the gaps deleted posts leave for posts). A 16-second
# bucket of the create scenario's posts held 22,948 posts, and a deep page read all 1,428 of
# its matches. Never for a second older than the revision: its posts do not hold the element.


def _walk_step(newest: str, pattern: str, quiet_sample: str, second_rate: str) -> str:
    """SQL of one step of GRAMS_WALK from `newest` (the newest created_at it covers): its lower
    bound, its bucket's element (odd: 4,096 s; even: 16 s; below -2**30: one second,
    app/db/grams.py), and whether its newest posts hold no match of `pattern` (`quiet`)."""
    coarse, fine = BUCKET_SECONDS, FINE_BUCKET_SECONDS
    newest_id_before = (
        "(SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp({} * {}) "
        "ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1)"
    )
    posts_in_bucket = (
        f"{newest_id_before.format('(bucket.coarse + 1)', coarse)} - "
        f"coalesce({newest_id_before.format('bucket.coarse', coarse)}, 0)"
    )
    # The RATE_SAMPLE-th post down from `newest` is younger than RATE_SAMPLE / second_rate seconds
    # (NULL, so not, for a rate of 0 or fewer posts).
    written_fast = (
        f"(SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= {newest} "
        f"ORDER BY rate.created_at DESC, rate.id DESC OFFSET {RATE_SAMPLE - 1} LIMIT 1) "
        f"> {newest} - make_interval(secs => {RATE_SAMPLE}.0 / nullif({second_rate}, 0))"
    )
    return f"""
        SELECT {newest} AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * {coarse})
                                  WHEN 1 THEN to_timestamp(bucket.fine * {fine})
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE {second_element_sql("bucket.second")} END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM {newest}) / {coarse}) AS coarse,
                   floor(extract(epoch FROM {newest}) / {fine}) AS fine,
                   floor(extract(epoch FROM {newest})) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= {newest}
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT {quiet_sample}
                ) AS sample
                WHERE sample.title_folded LIKE {pattern} ESCAPE '{LIKE_ESCAPE}'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ({posts_in_bucket}) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= {DENSE_BUCKET} OR (look.quiet AND bucket_posts.posts <= {QUIET_BUCKET})
                    THEN 0
                WHEN NOT look.quiet AND {second_rate} > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND {written_fast}
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    """


def _grams_walk(*, keyset: bool) -> Prepared:
    columns = ", ".join(POST_COLUMNS)
    start = "(SELECT created_at FROM posts WHERE id = :before_id)" if keyset else "(SELECT max(created_at) FROM posts)"
    # The cursor as in `_after_cursor`: strictly after the cursor post, which the viewer must see.
    cursor = (
        "((SELECT cursor.created_at FROM posts AS cursor "
        "WHERE cursor.id = :before_id AND (cursor.published OR cursor.owner_id = :viewer_id)), :before_id)"
    )

    def after_cursor(source: str) -> str:
        return f"AND ({source}.created_at, {source}.id) < {cursor}" if keyset else ""

    def in_step(source: str, condition: str = "true") -> str:
        """The posts of the step (after the cursor, if any), newest first: what the scan reads."""
        return (
            f"FROM posts AS {source} WHERE {condition} AND {source}.created_at >= steps.lower "
            f"AND {source}.created_at <= steps.newest {after_cursor(source)} "
            f"ORDER BY {source}.created_at DESC, {source}.id DESC"
        )

    # Every value of the search (the scan's length, the pattern, the pieces, the page's bounds)
    # comes through a subquery, so that no plan sees it (as the pieces in HOLDS_THE_GRAMS): with
    # the scan's length and the pattern in view, every plan made for the values looked cheaper
    # than the generic one, and PostgreSQL planned the walk again each time (3 ms); with the page's
    # LIMIT in view, a plan made for a rare phrase expected fewer rows, and after a few such
    # phrases on a connection every walk there was planned again (1.3 ms, then 1.8 against 0.75 ms
    # to run, on the benchmark's data).
    scan, pattern, pieces = "(SELECT :scan)", "(SELECT :pattern)", "(SELECT :walk_grams)"
    quiet_sample, second_rate = "(SELECT :quiet_sample)", "(SELECT :second_rate)"
    limit, skip, reach = "(SELECT :limit)", "(SELECT :skip)", "(SELECT :limit + :skip)"
    walk = text(
        f"""
        WITH RECURSIVE steps(newest, lower, element, quiet, depth) AS (
            SELECT step.newest, step.lower, step.element, step.quiet, 1
            FROM (SELECT {start} AS newest OFFSET 0) AS head
            CROSS JOIN LATERAL ({_walk_step("head.newest", pattern, quiet_sample, second_rate)}) AS step
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT step.newest, step.lower, step.element, step.quiet, steps.depth + 1
            FROM steps
            CROSS JOIN LATERAL (
                SELECT max(older.created_at) AS newest FROM posts AS older WHERE older.created_at < steps.lower
            ) AS head
            CROSS JOIN LATERAL ({_walk_step("head.newest", pattern, quiet_sample, second_rate)}) AS step
            WHERE head.newest IS NOT NULL AND steps.depth < {WALK_BUCKETS}
        )
        SELECT found.* FROM steps
        CROSS JOIN LATERAL (SELECT {scan} > 0 AND NOT steps.quiet AS scans OFFSET 0) AS scan
        LEFT JOIN LATERAL (
            SELECT last.created_at, last.id {in_step("last", "scan.scans")} OFFSET greatest({scan} - 1, 0) LIMIT 1
        ) AS scanned_to ON true
        CROSS JOIN LATERAL (
            (
                SELECT {", ".join(f"scanned.{name}" for name in POST_COLUMNS)} FROM (
                    SELECT {", ".join(f"newest.{name}" for name in POST_COLUMNS)}, newest.title_folded
                    {in_step("newest", "scan.scans")} LIMIT {scan}
                ) AS scanned
                WHERE scanned.title_folded LIKE {pattern} ESCAPE '{LIKE_ESCAPE}'
                  AND (scanned.published OR scanned.owner_id = :viewer_id)
            )
            UNION ALL
            (
                SELECT {", ".join(f"candidates.{name}" for name in POST_COLUMNS)} FROM (
                    SELECT {columns}, title_folded FROM posts
                    WHERE title_grams @> ARRAY[steps.element]
                      AND title_grams @> CASE WHEN steps.quiet THEN {pieces} ELSE ({pieces})[1:1] END
                      AND (published OR owner_id = :viewer_id)
                    OFFSET 0
                ) AS candidates
                WHERE candidates.title_folded LIKE {pattern} ESCAPE '{LIKE_ESCAPE}'
                  AND candidates.created_at >= steps.lower AND candidates.created_at <= steps.newest
                  {after_cursor("candidates")}
                  AND (NOT scan.scans
                       OR (candidates.created_at, candidates.id) < (scanned_to.created_at, scanned_to.id))
                ORDER BY candidates.created_at DESC, candidates.id DESC
                LIMIT {reach}
            )
            LIMIT {reach}
        ) AS found
        LIMIT {limit} OFFSET {skip}
        """
    ).bindparams(
        bindparam("walk_grams", type_=postgresql.ARRAY(Integer)),
        bindparam("pattern", type_=String),
        bindparam("limit", type_=Integer),
        bindparam("skip", type_=Integer),
        bindparam("scan", type_=Integer),
        bindparam("quiet_sample", type_=Integer),
        bindparam("second_rate", type_=Integer),
        bindparam("viewer_id", type_=Integer),
        *([bindparam("before_id", type_=Integer)] if keyset else []),
    )
    page = walk.columns(*(posts.c[name] for name in POST_COLUMNS))
    return _posts_with_owner_and_votes(page, searches=True)  # type: ignore[arg-type]


GRAMS_WALK = {keyset: _grams_walk(keyset=keyset) for keyset in (False, True)}

# How many posts the newest WALK_BUCKETS time buckets that hold any hold (`posts`), and how many
# such buckets there are (`buckets`, fewer in a younger feed): what GRAMS_WALK steps through from
# the head of the feed, each bucket found as a step finds it (empty stretches of time cost it
# nothing, so they count for nothing here either). The posts are told as the walk tells them, by
# ids (a post written later has a greater id): a few probes of the feed index, however many posts.
# The app weighs the walk against reading every candidate by it (SearchPlan.candidates_first).
FEED_BUCKETS = Prepared.of(
    text(
        f"""
        SELECT feed.buckets, feed.posts FROM (
        WITH RECURSIVE buckets(lower, depth) AS (
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / {BUCKET_SECONDS}) * {BUCKET_SECONDS}), 1
            FROM (SELECT max(created_at) AS newest FROM posts) AS head
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / {BUCKET_SECONDS}) * {BUCKET_SECONDS}),
                   buckets.depth + 1
            FROM buckets
            CROSS JOIN LATERAL (SELECT max(created_at) AS newest FROM posts WHERE created_at < buckets.lower) AS head
            WHERE head.newest IS NOT NULL AND buckets.depth < {WALK_BUCKETS}
        )
        SELECT (SELECT count(*) FROM buckets) AS buckets,
               (SELECT id FROM posts ORDER BY created_at DESC, id DESC LIMIT 1)
               - coalesce((SELECT id FROM posts WHERE created_at < (SELECT min(lower) FROM buckets)
                           ORDER BY created_at DESC, id DESC LIMIT 1), 0) AS posts
        ) AS feed
        """
    )
)
# One author's posts (`owner_id`), served by the index posts (owner_id, created_at, id):
# their published posts, and their drafts too when the author is the caller. Keyed by
# (search, keyset); a search here goes through the author's posts, not a window.
OWNER_POSTS = {
    (search, keyset): _posts_with_owner_and_votes(_post_page(search=search, keyset=keyset, owner=True), searches=search)
    for search in (False, True)
    for keyset in (False, True)
}


def feed_page(*, owner: bool, keyset: bool, limit: int, skip: int) -> Prepared | None:
    """LIST_POSTS[False, keyset] (or OWNER_POSTS[False, keyset]) with the page's size written in, and
    for a `skip`, how far it may reach; None past MAX_REACH (the caller runs LIST_POSTS / OWNER_POSTS).

    Why: with LIMIT and OFFSET as parameters, PostgreSQL's generic plan must assume a
    tenth of the table is asked for, so it never looks cheaper than the plan made for
    the actual values, and every execution is planned again: measured on the benchmark's
    data, planning took longer than running the page (369 vs 206 µs a statement, one
    after another, for a first page; 172 of 399 µs for pages at skip 0 to 990). With the
    page size a literal, and a `skip` page taken from the first `reach` posts (a literal
    too: the next power of two at or above skip + limit), the generic plan is the plan
    made for the values, at the same cost, and PostgreSQL keeps it per connection after
    five executions. The reach only bounds the planner's estimate: the scan stops at
    skip + limit rows, as before. Statements are built on first use, one per page size,
    reach and kind asked for (6,000 at most: 100 sizes, 15 reaches from none to 16,384,
    4 kinds; the last 256 kept).
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE_SIZE} posts, not {limit}")
    if skip == 0:
        return _feed_page(owner, keyset, limit, None)
    if skip + limit > MAX_REACH:
        return None
    return _feed_page(owner, keyset, limit, 1 << (skip + limit - 1).bit_length())


@functools.lru_cache(maxsize=256)
def _feed_page(owner: bool, keyset: bool, limit: int, reach: int | None) -> Prepared:
    return _posts_with_owner_and_votes(_post_page(search=False, keyset=keyset, owner=owner, first=limit, reach=reach))


MAX_PAGE_SIZE = 100
MAX_REACH = 1 << 14  # skip + limit up to 16,384; deeper pages are planned each time (keyset paging is not)
# What docs/statements.sql shows of them: the default page, first and at skip 20.
FIRST_PAGE_OF_10 = _feed_page(False, False, 10, None)
PAGE_OF_10_WITHIN_32 = _feed_page(False, False, 10, 32)
POST_DETAIL = _posts_with_owner_and_votes(
    select(*(posts.c[name] for name in POST_COLUMNS)).where(posts.c.id == bindparam("post_id"), VISIBLE_TO_VIEWER)
)
POST_OWNERSHIP = Prepared.of(
    select(posts.c.id, posts.c.owner_id, posts.c.published).where(posts.c.id == bindparam("post_id"))
)

_owner = users.alias("owner")
# On PostgreSQL, the post's search pieces (`title_grams`, from app/db/grams.py) and its time
# buckets, which PostgreSQL adds from the same now() as `created_at`'s default.
_NEW_POST_GRAMS = bindparam("title_grams", type_=postgresql.ARRAY(Integer)).op("||")(
    literal_column(bucket_elements_sql("now()"), postgresql.ARRAY(Integer))
)


def _create_post(*, grams: bool) -> Executable:
    """One round trip: the new post with its owner, or no row at all when the account is gone."""
    columns = ["title", "title_folded", "content", "published", "owner_id"]
    values: list[ColumnElement[Any]] = [
        bindparam("title", type_=String),
        bindparam("title_folded", type_=String),
        bindparam("content", type_=String),
        bindparam("published", type_=Boolean),
        users.c.id,
    ]
    if grams:
        columns.append("title_grams")
        values.append(_NEW_POST_GRAMS)
    return (
        insert(posts)
        .from_select(columns, select(*values).where(_token_counts(users)))
        .returning(
            *(posts.c[name] for name in POST_COLUMNS),
            # The owner is the viewer (and RETURNING cannot correlate to the new row on SQLite).
            select(_owner.c.email).where(_owner.c.id == bindparam("viewer_id")).scalar_subquery().label("owner_email"),
            select(_owner.c.created_at)
            .where(_owner.c.id == bindparam("viewer_id"))
            .scalar_subquery()
            .label("owner_created_at"),
        )
    )


CREATE_POST = Prepared.of(_create_post(grams=False), postgresql_statement=_create_post(grams=True), proves_viewer=True)
# One static statement for PUT and PATCH: a field passed as None keeps its value (no
# column of a post may be NULL, so None cannot mean "set to NULL").
_CHANGES = {
    "title": func.coalesce(bindparam("title", type_=String), posts.c.title),
    "title_folded": func.coalesce(bindparam("title_folded", type_=String), posts.c.title_folded),
    "content": func.coalesce(bindparam("content", type_=String), posts.c.content),
    "published": func.coalesce(bindparam("published", type_=Boolean), posts.c.published),
}
# A new title's pieces, with the post's time buckets (from its created_at); None keeps them.
# (CASE, not coalesce: PostgreSQL's NULL || element is an array of that element.)
_EDITED_GRAMS = bindparam("title_grams", type_=postgresql.ARRAY(Integer))
_CHANGED_GRAMS = case(
    (_EDITED_GRAMS.is_(None), posts.c.title_grams),
    else_=_EDITED_GRAMS.op("||")(literal_column(bucket_elements_sql("posts.created_at"), postgresql.ARRAY(Integer))),
)


def _update_post(*, grams: bool) -> Executable:
    changes = {**_CHANGES, "title_grams": _CHANGED_GRAMS} if grams else _CHANGES
    return (
        update(posts)
        .where(posts.c.id == bindparam("post_id"))
        .values(**changes)
        .returning(*(posts.c[name] for name in POST_COLUMNS))
    )


UPDATE_POST = Prepared.of(_update_post(grams=False), postgresql_statement=_update_post(grams=True))
# Posts written without `title_folded` (by an older Agora during a deploy, or by the
# offline migration script), a batch at a time; and folding one, unless its title changed
# meanwhile. On SQLite, through the partial index ix_posts_title_unfolded.
UNFOLDED_BATCH = 500


def _titles_without(column: ColumnElement[Any]) -> Prepared:
    """The id and title of the first UNFOLDED_BATCH posts (by id) whose `column` is NULL."""
    return Prepared.of(
        select(posts.c.id, posts.c.title)
        .where(column.is_(None))
        .order_by(posts.c.id)
        .limit(literal_column(str(UNFOLDED_BATCH), Integer))
    )


UNFOLDED_TITLES = _titles_without(posts.c.title_folded)
FOLD_TITLE = Prepared.of(
    update(posts)
    .where(posts.c.id == bindparam("post_id"), posts.c.title == bindparam("read_title", type_=String))
    .values(title_folded=bindparam("title_folded", type_=String))
)
# On PostgreSQL, the same for posts without `title_grams` (which those without `title_folded`
# are among), through the partial index ix_posts_title_ungrammed; a batch is filled in
# by one statement, each post unless its title changed since it was read.
UNGRAMMED_TITLES = _titles_without(posts.c.title_grams)
FILL_TITLE_GRAMS = Prepared.of(
    text(
        "UPDATE posts SET title_folded = filled.folded, "
        f"title_grams = CAST(filled.grams AS INTEGER[]) || {bucket_elements_sql('posts.created_at')} "
        "FROM unnest(CAST(:post_ids AS INTEGER[]), CAST(:read_titles AS VARCHAR[]), CAST(:folded AS VARCHAR[]), "
        "CAST(:grams AS VARCHAR[])) AS filled(id, title, folded, grams) "
        "WHERE posts.id = filled.id AND posts.title = filled.title"
    )
)
# RETURNING: of several concurrent deletions of one post, only the one that deleted it gets a row.
DELETE_POST = Prepared.of(delete(posts).where(posts.c.id == bindparam("post_id")).returning(posts.c.id))

# --- votes -------------------------------------------------------------------

# The vote's post, if the viewer may see it and the viewer's account exists.
_VOTABLE_POST = (
    select(bindparam("viewer_id", type_=Integer), posts.c.id)
    .where(posts.c.id == bindparam("post_id"), VISIBLE_TO_VIEWER)
    .where(VIEWER_EXISTS)
)


def _add_vote(dialect: Any) -> Executable:
    # ON CONFLICT DO NOTHING: a second identical vote (even sent at the same instant)
    # inserts nothing instead of failing, and the endpoint answers 409.
    insert_vote = dialect.insert(votes).from_select(["user_id", "post_id"], _VOTABLE_POST)
    return cast(Executable, insert_vote.on_conflict_do_nothing().returning(votes.c.post_id))


# Each returns the post id when it changed something; when not, the endpoint finds out why.
ADD_VOTE = Prepared.of(_add_vote(sqlite), postgresql_statement=_add_vote(postgresql), proves_viewer=True)
REMOVE_VOTE = Prepared.of(
    delete(votes)
    .where(votes.c.user_id == bindparam("viewer_id"), votes.c.post_id == bindparam("post_id"))
    .where(exists(_VOTABLE_POST))
    .returning(votes.c.post_id),
    proves_viewer=True,
)


# --- logging out ---------------------------------------------------------------

# The token presented stops counting (VIEWER_EXISTS looks for its jti here). A second,
# concurrent logout of the same token hits the primary key: `Viewer.fetch` then finds
# the token no longer counts and answers 401, as for any revoked token.
REVOKE_TOKEN = Prepared.of(
    insert(revoked_tokens)
    .from_select(
        ["jti", "expires_at"],
        select(bindparam("viewer_jti", type_=String), bindparam("expires_at", type_=BigInteger)).where(VIEWER_EXISTS),
    )
    .returning(revoked_tokens.c.jti),
    proves_viewer=True,
)
# Rows of tokens that have expired anyway, oldest first, a bounded number at a time
# (each logout clears up to this many: the table holds about the tokens logged out
# within one token lifetime).
PURGE_BATCH = 100
PURGE_REVOKED_TOKENS = Prepared.of(
    delete(revoked_tokens).where(
        revoked_tokens.c.jti.in_(
            select(revoked_tokens.c.jti)
            .where(revoked_tokens.c.expires_at < bindparam("now", type_=BigInteger))
            .order_by(revoked_tokens.c.expires_at)
            .limit(literal_column(str(PURGE_BATCH), Integer))
        )
    )
)

# --- readiness ---------------------------------------------------------------

# Whether the database was ever migrated, then where it stands.
ALEMBIC_TABLE_EXISTS = {
    "postgresql": Prepared.of(text("SELECT to_regclass('alembic_version') IS NOT NULL AS present")),
    "sqlite": Prepared.of(
        text("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version') AS present")
    ),
}
SCHEMA_REVISIONS = Prepared.of(text("SELECT version_num FROM alembic_version"))


def named_statements() -> dict[str, Prepared]:
    """Every statement of this module by name (`LIST_POSTS[search, keyset]` style for the keyed ones)."""
    found: dict[str, Prepared] = {}
    for name, value in globals().items():
        if isinstance(value, Prepared):
            found[name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, Prepared) for v in value.values()):
            for key, prepared in value.items():
                label = ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)
                found[f"{name}[{label}]"] = prepared
    return found


def render_statements() -> str:
    """The SQL of every statement, as PostgreSQL (asyncpg) and SQLite receive it."""
    parts = [
        "-- The SQL Agora runs, as printed by `python -m app.db.statements` (tests/test_statements.py",
        "-- keeps docs/statements.sql equal to it). PostgreSQL gets $n parameters, SQLite named ones.",
    ]
    for name, prepared in named_statements().items():
        flags = " (proves the viewer's account)" if prepared.proves_viewer else ""
        if prepared.searches:
            flags += " (a search: stopped after SEARCH_TIMEOUT_MS)"
        sqlite_sql = str(prepared.statement.compile(dialect=sqlite.dialect(paramstyle="named")))  # type: ignore[attr-defined]
        parts += [
            "",
            f"-- {name}{flags}",
            f"-- parameters: {', '.join(prepared.parameter_names) or 'none'}",
            "-- PostgreSQL:",
            prepared.asyncpg_sql.strip() + ";",
            "-- SQLite:",
            sqlite_sql.strip() + ";",
        ]
    return "\n".join(line.rstrip() for text in parts for line in text.splitlines() or [""]) + "\n"


if __name__ == "__main__":
    print(render_statements(), end="")
