"""Posts and votes: the feed and its search strategy, one post, the owner's edits, votes.

Every function takes the `Viewer` and returns rows (app/db/statements.py says which
columns); the routers turn them into responses (app/api/views.py).
"""

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.db import statements
from app.db.backends import Database, Prepared, Row
from app.db.errors import DatabaseConflict
from app.db.folding import fold
from app.db.grams import AROUND_CENTRES, FINE_BUCKET_SECONDS, as_array_literal, gram_hash, gram_pieces, grams
from app.domain.errors import Conflict, Forbidden, InvalidParameter, NotFound
from app.domain.viewer import Viewer


async def fill_missing_search_columns(database: Database) -> int:
    """Give every post written without them its search columns, so searches find it; how many.

    An older Agora serving during a deploy, or the offline migration script, leaves such
    posts (see revisions 0790f43abbfb and 8c3f1b6e2a90). On PostgreSQL, `title_folded` and
    `title_grams`, a batch per statement; on SQLite, `title_folded`. Usually there are none:
    one probe of an empty partial index.
    """
    filled = 0
    if database.dialect == "postgresql":
        while rows := await database.fetch(statements.UNGRAMMED_TITLES):
            titles = [row["title"] for row in rows]
            folded = [fold(title) for title in titles]
            params: dict[str, Any] = {
                "post_ids": [row["id"] for row in rows],
                "read_titles": titles,
                "folded": folded,
                "grams": [as_array_literal(grams(text)) for text in folded],
            }
            await database.fetch(statements.FILL_TITLE_GRAMS, params)
            filled += len(rows)
        return filled
    while rows := await database.fetch(statements.UNFOLDED_TITLES):
        for row in rows:
            params = {"post_id": row["id"], "read_title": row["title"], "title_folded": fold(row["title"])}
            await database.fetch(statements.FOLD_TITLE, params)
        filled += len(rows)
    return filled


# How many of a search's pieces (app/db/grams.py) go to the index: the rarest. Each more
# narrows the candidates less than the one before, and costs a posting list to read.
GRAMS_PICKED = 3
# The walk (GRAMS_WALK) asks a busy time bucket for the rarest piece alone: a bucket's
# candidates are narrowed little by more, and each more costs its posting list's start
# again in every bucket (measured: 0.10 ms a bucket of 9,420 posts with one, 0.27 with three).
# A quiet bucket (its newest posts hold no match: a burst on something else) is asked for
# the two rarest, so that a burst holding the rarest piece is not read post by post
# (`postgres` after the benchmark's burst, whose `egret` holds `gre`: 3.3 against 1.4 ms).
QUIET_WALK_GRAMS = 2
# Before a time bucket's matches come from the index, the walk reads the bucket's newest posts
# down the feed when a search's statistics say that WALK_SCAN_MARGIN times the page is among
# so few of them (at most WALK_SCAN_MAX: about 0.5 µs a post) and the newest WALK_SAMPLE posts
# of the bucket hold a match (not a burst of posts on something else); the index then
# answers for the rest of the bucket only. The index reads every match of a bucket (about
# 1.2 µs each), thousands where a busy minute wrote tens of thousands of posts.
WALK_SCAN_MARGIN = 2
WALK_SCAN_MAX = 1024
# A busy step of the walk goes one second at a time where the feed is written at this many posts
# a second or more (SearchPlan.second_rate; statements._walk_step): the rate at which its
# 16-second bucket holds DENSE_BUCKET posts, and at least the rate at which a second holds
# 1/SECOND_STEPS of the page's matches by the statistics, so that a deep page takes a few
# one-second steps (each about 0.1 ms whatever it reads), not dozens. Measured on the
# benchmark's data, a head written at 1,434 posts a second: `skip=300` 2.32 against 1.39 ms,
# `limit=100` 2.67 against 1.40 ms (one connection, the walk alone).
SECOND_MIN_RATE = statements.DENSE_BUCKET // FINE_BUCKET_SECONDS
SECOND_STEPS = 8
SECOND_MAX_RATE = 1_000_000  # a bound for the parameter: no feed is written faster
# A step of the walk is quiet (a burst of posts on something else) when its newest QUIET_SAMPLE
# posts hold no match, or COMMON_QUIET_SAMPLE for a search in at least COMMON_SHARE of the
# titles: 64 busy posts hold none of a word in 6 % of them 1.9 % of the time (0.04 % for 128),
# and a quiet step reads every match of its 16-second bucket (1,439 of `kestrel` after the
# burst on the benchmark's data: `limit=100` 3.83 against 1.55 ms). A rarer search keeps 64:
# its steps are nearly all quiet, each look reads the whole sample (a phrase's first page
# 2.19 against 2.69 ms with 128), and a bucket holds few of its matches.
QUIET_SAMPLE = 64
COMMON_QUIET_SAMPLE = 128
COMMON_SHARE = 1 / 32
# Up to GRAMS_WALK_ABOVE estimated matches, a search reads every candidate at once (GRAMS_SEARCH,
# about 3 µs each), unless weighed as below (WALK_START_US); above it, it walks the time buckets
# (GRAMS_WALK), which stops at the page. When the walk comes up short (its end, or WALK_BUCKETS
# reached), every candidate is read after all, unless there are more than GRAMS_SEARCH_MAX of
# them or GRAMS_SEARCH_MAX_SHARE of all posts: then the planner's statement (LIST_POSTS), under
# the search timeout. A page within the first SHORT_WALK_REACH matches reads every candidate whatever their number: the
# newest WALK_BUCKETS buckets held less than it, so the search is rare where the feed is newest,
# and the planner would walk down the feed over all of their posts and on, through every title
# for a word in none whose pieces are each common ("yarn": "yar" and "arn", from "yarrow" and
# "garnet" on the benchmark's data; past SEARCH_TIMEOUT_MS, against 8 ms through the index).
GRAMS_WALK_ABOVE = 1_000
GRAMS_SEARCH_MAX = 20_000
GRAMS_SEARCH_MAX_SHARE = 0.05
SHORT_WALK_REACH = 500
# Where the feed tells how many posts a time bucket holds (GramStatistics.bucket_posts), the
# walk and every candidate are weighed instead of GRAMS_WALK_ABOVE (up to GRAMS_SEARCH_MAX
# matches; SearchPlan.candidates_first): a walk costs about
# WALK_START_US and WALK_STEP_US a bucket (one probe of the index, its bookkeeping), reading every
# candidate about CANDIDATE_US each (measured on the benchmark's data, one connection, generic plans:
# 445 candidates 1.3 ms, 2,650 candidates 5.8 ms; a walk of six buckets 0.7 ms). Two common words
# side by side in 445 titles of a million, whose tenth newest is about 22,000 posts deep: a
# walk of six buckets of 4,096 posts (0.8 ms) against every candidate (1.3 ms).
WALK_START_US = 200
WALK_STEP_US = 100
CANDIDATE_US = 3
SCANNED_US = 0.5  # a post the walk's scan reads down the feed (WALK_SCAN_MAX)
# A common search's page expected within this many of the newest posts is found by walking
# the feed (about 1.2 µs a post checked, with the planning: 3 ms for 2,500), when the search is
# in at least FEED_WALK_SHARE of the titles, unless the newest posts lately held fewer of its
# matches than its statistics say (a burst of posts on something else). A rarer one's deep
# page walks the time buckets: a bucket's matches are fewer than the posts around them, and
# cost about 1.5 µs each (the benchmark's words, in 6 % of the titles: `limit=100` 1.4 against
# 2.6 ms, `skip` 10 to 400 0.85 against 1.8 ms, on average on its data as seeded).
FEED_WALK_MAX = 10_000
FEED_WALK_SHARE = 0.15
# The first page whose presence among the newest posts tells that they look as the statistics say.
PROBE_PAGE = 10


@dataclass(frozen=True)
class GramStatistics:
    """What PostgreSQL's statistics say of `title_grams`: posts holding each listed piece, and about
    how many hold one it does not list (half the least listed: it is rarer than all of those)."""

    holding: dict[int, float]
    unlisted: float
    posts: float
    # Posts a time bucket that GRAMS_WALK steps through holds, on average over the newest
    # WALK_BUCKETS of them (statements.FEED_BUCKETS); None: unknown.
    bucket_posts: float | None = None

    def posts_holding(self, gram: int) -> float:
        return self.holding.get(gram, self.unlisted)


@dataclass(frozen=True)
class SearchPlan:
    """Which pieces of a search go to the index, and about how many posts hold them all (at most)."""

    grams: list[int]  # the rarest first
    matches: float  # math.inf without statistics
    posts: float  # math.inf without statistics
    # No space in it: `matches` is then close to the truth (the rarest piece of one word);
    # for several words it is an estimate (`words_in_a_row`), the pieces only bound it.
    one_word: bool = False
    bucket_posts: float | None = None  # GramStatistics.bucket_posts

    @property
    def walk_grams(self) -> list[int]:
        """The pieces GRAMS_WALK asks a quiet time bucket for; a busy one, for the first of them."""
        return self.grams[:QUIET_WALK_GRAMS]

    def walk_scan(self, reach: int) -> int:
        """How many of a time bucket's newest posts GRAMS_WALK reads down the feed (`scan`), 0 for none:
        WALK_SCAN_MARGIN times the posts that hold `reach` (skip + limit) matches by the statistics,
        unless that is more than WALK_SCAN_MAX."""
        if math.isinf(self.matches) or self.matches <= 0 or self.posts <= 0:
            return 0
        scan = math.ceil(WALK_SCAN_MARGIN * reach * self.posts / self.matches)
        return scan if scan <= WALK_SCAN_MAX else 0

    def second_rate(self, reach: int) -> int:
        """Posts a second from which GRAMS_WALK takes a busy step one second at a time (SECOND_MIN_RATE,
        SECOND_STEPS), for a page `reach` (skip + limit) matches deep; 0 (never) when the walk scans
        down the feed for it (`walk_scan`): the scan stops at the page, and one second would only
        add a step where a first second is short."""
        if self.walk_scan(reach):
            return 0  # the step's newest posts, read down the feed, hold the page: no need to split it
        if math.isinf(self.matches) or self.matches <= 0 or self.posts <= 0:
            return SECOND_MIN_RATE
        rate = math.ceil(min(reach * self.posts / self.matches / SECOND_STEPS, SECOND_MAX_RATE))
        return max(SECOND_MIN_RATE, rate)

    @property
    def quiet_sample(self) -> int:
        """How many of a step's newest posts GRAMS_WALK looks at for a match (QUIET_SAMPLE, COMMON_SHARE)."""
        if math.isinf(self.matches) or self.posts <= 0 or self.matches < COMMON_SHARE * self.posts:
            return QUIET_SAMPLE
        return COMMON_QUIET_SAMPLE

    def window_may_fill(self, reach: int) -> bool:
        """Whether `reach` matches (skip + limit) are to be expected among the newest SEARCH_WINDOW posts."""
        if math.isinf(self.matches) or self.posts <= 0:
            return True
        return self.matches / self.posts * statements.SEARCH_WINDOW >= reach

    def feed_walk_fits(self, reach: int) -> bool:
        """Whether `reach` matches of this search (one word, more than GRAMS_WALK_ABOVE and in at least
        FEED_WALK_SHARE of the titles) are to be expected within FEED_WALK_MAX of the feed's newest
        posts, by its statistics."""
        if not self.one_word or math.isinf(self.matches) or self.matches <= GRAMS_WALK_ABOVE:
            return False
        if self.matches < FEED_WALK_SHARE * self.posts:
            return False
        return reach * self.posts <= FEED_WALK_MAX * self.matches

    def candidates_first(self, reach: int | None) -> bool:
        """Whether reading every candidate (GRAMS_SEARCH) is expected to cost less than walking the
        time buckets to `reach` matches (skip + limit): the walk steps through about as many buckets
        as hold that many matches by the statistics (more than WALK_BUCKETS: it would come up short),
        and reads the matches of each. Without `reach` or the posts a bucket holds: up to
        GRAMS_WALK_ABOVE matches."""
        if reach is None or self.bucket_posts is None or math.isinf(self.matches) or self.matches <= 0:
            return self.matches <= GRAMS_WALK_ABOVE
        if self.matches > GRAMS_SEARCH_MAX:
            return False
        steps = reach * self.posts / self.matches / self.bucket_posts
        if steps > statements.WALK_BUCKETS:
            return True
        # The walk reads a bucket's newest posts first (`walk_scan`), or else every match of the
        # buckets it steps through.
        buckets = max(1, math.ceil(steps))
        scan = self.walk_scan(reach)
        if scan:
            read = SCANNED_US * scan
        else:
            read = CANDIDATE_US * min(self.matches, buckets * self.bucket_posts * self.matches / self.posts)
        return CANDIDATE_US * self.matches <= WALK_START_US + WALK_STEP_US * buckets + read

    def whole_table(
        self, *, keyset: bool, reach: int | None = None, head_typical: bool = False, rare: bool = False
    ) -> list[Prepared]:
        """The statements that find the page in the whole table, in order: each next one runs
        only when the one before returned less than a page, and the last is exact in every case.

        `reach`: skip + limit; `head_typical`: the newest posts held this search's matches as
        often as its statistics say (its first page was found among them lately). Then a page of
        one word expected within FEED_WALK_MAX posts of the feed's head is found by walking the feed
        (the planner's LIST_POSTS), which costs the same however many posts each time bucket
        holds; the bucket walk reads every match of a bucket, thousands in a busy hour. `rare`: the
        walk lately came up short of this search's first page: what follows the walk goes first,
        when that is reading every candidate.
        """
        if not self.grams:  # nothing the index could narrow it by
            return [statements.LIST_POSTS[True, keyset]]
        if head_typical and reach is not None and self.feed_walk_fits(reach):
            return [statements.LIST_POSTS[True, keyset]]
        if self.candidates_first(reach):
            return [statements.GRAMS_SEARCH[keyset]]
        few = self.matches <= GRAMS_SEARCH_MAX and self.matches <= GRAMS_SEARCH_MAX_SHARE * self.posts
        if few or (reach is not None and reach <= SHORT_WALK_REACH and not math.isinf(self.matches)):
            if rare:
                return [statements.GRAMS_SEARCH[keyset]]
            return [statements.GRAMS_WALK[keyset], statements.GRAMS_SEARCH[keyset]]
        return [statements.GRAMS_WALK[keyset], statements.LIST_POSTS[True, keyset]]


def gram_statistics(row: Mapping[str, Any]) -> GramStatistics | None:
    """GramStatistics from a row of GRAM_FREQUENCIES; None when `posts` was never ANALYZEd."""
    listed, frequencies, posts = row["grams"], row["frequencies"], row["posts"]
    if listed is None or frequencies is None or not posts or posts <= 0:
        return None
    # The frequencies go on with the least and greatest of them (and one for NULL elements).
    holding = {gram: frequency * posts for gram, frequency in zip(listed, frequencies, strict=False)}
    return GramStatistics(holding, frequencies[len(listed)] * posts / 2, posts)


def with_bucket_posts(statistics: GramStatistics, row: Mapping[str, Any]) -> GramStatistics:
    """`statistics` with the posts a time bucket holds, from a row of FEED_BUCKETS; as they were for an
    empty feed, or where the ids do not follow the posts' times (fewer posts than buckets: unknown)."""
    if not row["buckets"] or row["posts"] is None or row["posts"] < row["buckets"]:
        return statistics
    return dataclasses.replace(statistics, bucket_posts=row["posts"] / row["buckets"])


def words_in_a_row(folded_search: str, statistics: GramStatistics) -> float | None:
    """About how many titles hold three words or more of a (folded) search side by side; None for
    fewer words, or words too short to tell.

    Each pair of neighbours is as common as its rarest piece across the space between them; the
    pairs chain through the words they share, as a Markov chain does: "a b c" is in about
    n(a b) x n(b c) / n(b) titles, n(b) the rarest piece of b alone. Without it, every phrase of
    three common words looked as common as its rarest pair (445 titles of a million on the
    benchmark's data, against about 4), and walked the time buckets for a page that is not there.
    """
    words = folded_search.split(" ")
    if len(words) < 3 or not all(words):
        return None

    def rarest(pieces: list[str]) -> float | None:
        return min((statistics.posts_holding(gram_hash(piece)) for piece in pieces), default=None)

    spaces = [index for index, character in enumerate(folded_search) if character == " "]
    pairs = [
        rarest(
            [
                folded_search[space - size // 2 : space - size // 2 + size]
                for size in AROUND_CENTRES
                if space - size // 2 >= 0 and space - size // 2 + size <= len(folded_search)
            ]
        )
        for space in spaces
    ]
    shared = [rarest([word[start : start + 3] for start in range(len(word) - 2)]) for word in words[1:-1]]
    if pairs[0] is None:
        return None
    estimate = pairs[0]
    for pair, word in zip(pairs[1:], shared, strict=True):
        if pair is None or word is None:
            return None
        estimate *= min(1.0, pair / word) if word > 0 else 0.0
    return estimate


def plan_search(folded_search: str, statistics: GramStatistics | None) -> SearchPlan:
    """The GRAMS_PICKED rarest pieces of a (folded) search, by the statistics; without them,
    the longest (a longer piece is rarer, as a rule). A search without pieces has no plan
    but the window and the planner's statement (`whole_table`)."""
    pieces = gram_pieces(folded_search)
    if not pieces:
        return SearchPlan([], math.inf, statistics.posts if statistics else math.inf)
    if statistics is None:
        ranked = sorted(pieces, key=lambda piece: (-len(piece), piece))
        picked = list(dict.fromkeys(gram_hash(piece) for piece in ranked))[:GRAMS_PICKED]
        return SearchPlan(picked, math.inf, math.inf)
    ranked = sorted(pieces, key=lambda piece: (statistics.posts_holding(gram_hash(piece)), -len(piece), piece))
    picked = list(dict.fromkeys(gram_hash(piece) for piece in ranked))[:GRAMS_PICKED]
    matches = min((statistics.posts_holding(gram) for gram in picked), default=statistics.posts)
    in_a_row = words_in_a_row(folded_search, statistics)
    if in_a_row is not None:
        matches = min(matches, in_a_row)
    return SearchPlan(
        picked, matches, statistics.posts, one_word=" " not in folded_search, bucket_posts=statistics.bucket_posts
    )


class GramFrequencies:
    """PostgreSQL's statistics of `title_grams` (GRAM_FREQUENCIES), read again every `seconds`."""

    def __init__(self, *, seconds: float = 300, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._read_at: float | None = None
        self._statistics: GramStatistics | None = None

    async def statistics(self, database: Database) -> GramStatistics | None:
        """The statistics, or None before the first ANALYZE of `posts`."""
        if self._read_at is None or self._clock() - self._read_at >= self._seconds:
            self._read_at = self._clock()
            rows = await database.fetch(statements.GRAM_FREQUENCIES)
            self._statistics = gram_statistics(rows[0]) if rows else None
            if self._statistics is not None:
                (feed,) = await database.fetch(statements.FEED_BUCKETS)
                self._statistics = with_bucket_posts(self._statistics, feed)
        return self._statistics

    def forget(self) -> None:
        """Read the statistics again at the next search (after an ANALYZE, in tests)."""
        self._read_at = None


def post_not_found(post_id: int) -> NotFound:
    return NotFound(f"post with id {post_id} was not found")


async def visible_post(viewer: Viewer, post_id: int) -> Row:
    """The post (id, owner_id, published) if the viewer may see it: published, or their own; else 404."""
    posts = await viewer.database.fetch(statements.POST_OWNERSHIP, {"post_id": post_id})
    # Someone else's draft is answered exactly like a missing post: its existence is private.
    if not posts or not (posts[0]["published"] or posts[0]["owner_id"] == viewer.id):
        raise post_not_found(post_id)
    return posts[0]


async def owned_post(viewer: Viewer, post_id: int) -> Row:
    """The post, if the viewer owns it: 404 when they cannot see it, 403 when it is someone else's."""
    post = await visible_post(viewer, post_id)
    if post["owner_id"] != viewer.id:
        raise Forbidden("Not authorized to perform requested action")
    return post


class ExpiringSet:
    """Keys remembered for `seconds` after they were last added; the oldest go first past `max_keys`."""

    def __init__(self, *, seconds: float, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._max_keys = max_keys
        self._clock = clock
        self._expiry: dict[str, float] = {}  # in the order the keys were added

    def add(self, key: str) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = self._clock() + self._seconds
        if len(self._expiry) > self._max_keys:
            del self._expiry[next(iter(self._expiry))]

    def __contains__(self, key: str) -> bool:
        expiry = self._expiry.get(key)
        if expiry is not None and expiry <= self._clock():
            del self._expiry[key]
            return False
        return expiry is not None

    def discard(self, key: str) -> None:
        self._expiry.pop(key, None)

    def clear(self) -> None:
        self._expiry.clear()


class Feed:
    """Pages of the posts a viewer sees, newest first, optionally searched: one per app.

    A search first looks among the newest `statements.SEARCH_WINDOW` posts (one plan for
    every word, see RECENT_SEARCH), unless PostgreSQL's statistics say the search is too
    rare to fill a page there; when the window holds less than the page, the whole table
    answers (`SearchPlan.whole_table`): on PostgreSQL through the grams index, on SQLite by
    scanning. Every path gives the same page. Searches whose first page missed the window
    lately skip it for `sparse_seconds` (not after a cursor); a deep page goes down the feed
    only for a search whose first page the window held lately (`_newest_hold_a_page`).
    """

    def __init__(self, *, sparse_seconds: float = 60, sparse_max_words: int = 4096) -> None:
        # Searches whose first page the newest posts held lately (typical) or did not (sparse).
        self.sparse_searches = ExpiringSet(seconds=sparse_seconds, max_keys=sparse_max_words)
        self.typical_searches = ExpiringSet(seconds=sparse_seconds, max_keys=sparse_max_words)
        # Searches whose bucket walk lately came up short of their first page: rare where the feed
        # is newest, though their pieces are common (a word in no title, or only in old ones).
        self.rare_searches = ExpiringSet(seconds=sparse_seconds, max_keys=sparse_max_words)
        self.gram_frequencies = GramFrequencies()

    def forget(self) -> None:
        """Forget what searches taught it: the newest posts' words and the statistics (after an ANALYZE, in tests)."""
        self.sparse_searches.clear()
        self.typical_searches.clear()
        self.rare_searches.clear()
        self.gram_frequencies.forget()

    async def page(
        self,
        viewer: Viewer,
        *,
        limit: int,
        skip: int,
        search: str,
        before_id: int | None,
        owner_id: int | None = None,
    ) -> Sequence[Row]:
        """One page of the feed (rows of statements.LIST_POSTS), or of one author's posts
        (`owner_id`: statements.OWNER_POSTS); 422 for a cursor the viewer cannot page from."""
        params: dict[str, Any] = {"limit": limit, "skip": skip}
        folded = fold(search) if search else ""
        if search:
            params["pattern"] = statements.like_pattern(folded)
        keyset = before_id is not None
        if keyset:
            params["before_id"] = before_id
        rows: Sequence[Row]
        # The usual page: a statement PostgreSQL plans once per connection (see feed_page).
        owner = owner_id is not None
        planned_once = None if search else statements.feed_page(owner=owner, keyset=keyset, limit=limit, skip=skip)
        if planned_once is not None:
            rows = await viewer.fetch(planned_once, {**params, "owner_id": owner_id} if owner else params)
        elif owner_id is not None:
            # The author's index serves every page; no search window.
            rows = await viewer.fetch(statements.OWNER_POSTS[bool(search), keyset], {**params, "owner_id": owner_id})
        elif not search:
            rows = await viewer.fetch(statements.LIST_POSTS[False, keyset], params)
        else:
            rows = await self._search(viewer, folded, search, params, keyset=keyset)
        if not rows and before_id is not None:
            # An empty keyset page must not hide a bad cursor: say so when that post is gone or not visible.
            try:
                await visible_post(viewer, before_id)
            except NotFound:
                raise InvalidParameter(("query", "before_id"), f"no post {before_id} to page from") from None
        return rows

    async def _search(
        self, viewer: Viewer, folded: str, search: str, params: dict[str, Any], *, keyset: bool
    ) -> Sequence[Row]:
        limit, skip = params["limit"], params["skip"]
        plan = None
        if viewer.database.dialect == "postgresql":
            plan = plan_search(folded, await self.gram_frequencies.statistics(viewer.database))
        rows: Sequence[Row] = []
        reach = skip + limit
        # What the feed's newest posts held says nothing of the posts before a cursor: a client pages on
        # from below a burst it walked past (a page of a common word there: 0.26 ms in the window,
        # against a walk of its 4,096-second bucket on the benchmark's data).
        sparse = search in self.sparse_searches and not keyset
        if reach <= statements.SEARCH_WINDOW and not sparse and (plan is None or plan.window_may_fill(reach)):
            rows = await viewer.fetch(statements.RECENT_SEARCH[keyset], params)
            if len(rows) >= limit:
                if skip == 0 and not keyset:
                    self._learn(search, newest_hold_a_page=True)
                return rows
            if skip == 0 and not keyset:
                self._learn(search, newest_hold_a_page=False)
            head_typical = False  # the posts where the page starts held less than it
        else:
            head_typical = search in self.typical_searches
            if plan is not None and not (head_typical or sparse or keyset) and plan.feed_walk_fits(reach):
                head_typical = await self._newest_hold_a_page(viewer, search, params)
        # No window, or it held less than a page: ask the whole table.
        if plan is None:
            return await viewer.fetch(statements.LIST_POSTS[True, keyset], params)
        rare = search in self.rare_searches
        for statement in plan.whole_table(keyset=keyset, reach=reach, head_typical=head_typical, rare=rare):
            walk = {"grams": plan.grams, "walk_grams": plan.walk_grams, "scan": plan.walk_scan(reach)}
            walk |= {"quiet_sample": plan.quiet_sample, "second_rate": plan.second_rate(reach)}
            rows = await viewer.fetch(statement, {**params, **walk})
            if len(rows) >= limit:
                break
            if statement is statements.GRAMS_WALK[False] and skip == 0:
                # Its first page is not in the newest WALK_BUCKETS buckets: for a while, skip the walk
                # (12 ms of 32 buckets for "yarn" on the benchmark's data) when every candidate follows.
                self.rare_searches.add(search)
        return rows

    async def _newest_hold_a_page(self, viewer: Viewer, search: str, params: dict[str, Any]) -> bool:
        """Whether the newest SEARCH_WINDOW posts hold a first page (PROBE_PAGE) of the search; remembered.

        Why: a deep page of a common word is cheapest down the feed, but only while the newest
        posts hold its matches as often as its statistics say; after a burst of posts on
        something else, the feed walk steps over every one of them (6 ms for 20,000, against 2
        for the bucket walk). One look at the window (about 0.2 ms) tells, once per
        `sparse_seconds` for each search.
        """
        probe = {**params, "skip": 0, "limit": PROBE_PAGE}
        probe.pop("before_id", None)
        held = len(await viewer.fetch(statements.RECENT_SEARCH[False], probe)) >= PROBE_PAGE
        self._learn(search, newest_hold_a_page=held)
        return held

    def _learn(self, search: str, *, newest_hold_a_page: bool) -> None:
        """Remember whether the feed's newest posts held a first page of `search`."""
        if newest_hold_a_page:
            self.typical_searches.add(search)
            self.sparse_searches.discard(search)
        else:
            self.sparse_searches.add(search)
            self.typical_searches.discard(search)


async def read_post(viewer: Viewer, post_id: int) -> Row:
    """One post with its owner, votes and the viewer's vote (a row of statements.POST_DETAIL); 404 if not visible."""
    rows = await viewer.fetch(statements.POST_DETAIL, {"post_id": post_id})
    if not rows:
        raise post_not_found(post_id)
    return rows[0]


async def create_post(viewer: Viewer, *, title: str, content: str, published: bool) -> Row:
    """The new post with its owner's columns (a row of statements.CREATE_POST)."""
    folded = fold(title)
    params = {"title": title, "title_folded": folded, "content": content, "published": published}
    if viewer.database.dialect == "postgresql":
        params["title_grams"] = grams(folded)
    rows = await viewer.fetch(statements.CREATE_POST, params)
    return rows[0]


async def update_post(viewer: Viewer, post: Row, changes: dict[str, Any]) -> Row:
    """Apply `changes` (title, content, published; one left out is kept) to a post of `owned_post`."""
    unchanged = {"title": None, "content": None, "published": None}
    folded = fold(changes["title"]) if changes.get("title") is not None else None
    searched: dict[str, Any] = {"title_folded": folded}
    if viewer.database.dialect == "postgresql":
        searched["title_grams"] = grams(folded) if folded is not None else None
    rows = await viewer.database.fetch(
        statements.UPDATE_POST, {**unchanged, **changes, **searched, "post_id": post["id"]}
    )
    if not rows:  # deleted between the ownership check and the update
        raise post_not_found(post["id"])
    await viewer.database.note_write(viewer.id)  # the statement does not name the viewer
    return rows[0]


async def delete_post(viewer: Viewer, post: Row) -> None:
    """Delete a post of `owned_post`, and its votes with it (ON DELETE CASCADE); 404 if it went meanwhile."""
    if not await viewer.database.fetch(statements.DELETE_POST, {"post_id": post["id"]}):
        raise post_not_found(post["id"])
    await viewer.database.note_write(viewer.id)  # the statement does not name the viewer


async def vote(viewer: Viewer, post_id: int, *, add: bool) -> None:
    """Add (or take back) the viewer's vote: 404 no post (for you) or no vote, 409 already voted."""
    try:
        changed = await viewer.fetch(statements.ADD_VOTE if add else statements.REMOVE_VOTE, {"post_id": post_id})
    except DatabaseConflict:  # the post was deleted while we voted: explained below as 404
        changed = []
    if changed:
        return
    # Nothing changed (and the account exists, or fetch said 401): find out why.
    await visible_post(viewer, post_id)
    if add:
        raise Conflict(f"user {viewer.id} has already voted on post {post_id}")
    raise NotFound("vote does not exist")
