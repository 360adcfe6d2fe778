"""Posts and votes: the feed and its search strategy, one post, the owner's edits, votes.

Every function takes the `Viewer` and returns rows (app/db/statements.py says which
columns); the routers turn them into responses (app/api/views.py).
"""

import re
import string
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.db import statements
from app.db.backends import Database, Prepared, Row
from app.db.errors import DatabaseConflict
from app.db.folding import fold
from app.domain.errors import Conflict, Forbidden, InvalidParameter, NotFound
from app.domain.viewer import Viewer


async def fold_missing_titles(database: Database) -> int:
    """Fold every post written without `title_folded`, so searches find it; how many were folded.

    An older Agora serving during a deploy, or the offline migration script, leaves them
    (see revision 0790f43abbfb). Usually there are none: one probe of an empty index.
    """
    folded = 0
    while rows := await database.fetch(statements.UNFOLDED_TITLES):
        for row in rows:
            params = {"post_id": row["id"], "read_title": row["title"], "title_folded": fold(row["title"])}
            await database.fetch(statements.FOLD_TITLE, params)
        folded += len(rows)
    return folded


# What revision 5c1e9a7d2b44's agora_title_symbols() collects from a title: ASCII punctuation.
TITLE_SYMBOLS = frozenset(string.punctuation)


def title_symbols(folded_search: str) -> list[str]:
    """The punctuation characters every title matching the (folded) search holds, sorted."""
    return sorted(TITLE_SYMBOLS.intersection(folded_search))


# Runs of ASCII letters and digits: what pg_trgm takes as words in any locale.
_ASCII_WORD = re.compile(r"[a-z0-9]{3,}")


def search_words(folded_search: str, most: int = 3) -> list[str]:
    """The longest `most` distinct words (3+ ASCII letters or digits) of the (folded) search, longest first."""
    words = dict.fromkeys(_ASCII_WORD.findall(folded_search))  # distinct, in the order typed
    return sorted(words, key=len, reverse=True)[:most]


def narrowing_substrings(folded_search: str) -> list[str]:
    """What WORDS_SEARCH looks up for a search of several words: its two longest words whole, or
    with three or more, the middle three letters of each of the three longest (one trigram each).

    Why: the index reads a list of posts per trigram, and a common word's lists are long.
    Two words whole keep the candidates few (the titles holding both); with three words,
    one trigram of each already does (measured on the benchmark's data, a pasted
    100-character search: 10.8 ms of execution with three words whole, 3.5 ms with a trigram of each).
    """
    words = search_words(folded_search)
    if len(words) < 3:
        return words
    return [word[(len(word) - 3) // 2 :][:3] for word in words]


# A search whose punctuation more titles hold than this (by PostgreSQL's statistics) is not
# served through them: reading and checking each candidate costs about 4 µs, so 10,000 are
# about 40 ms, and a walk down the feed finds a common character's page sooner.
SYMBOL_CANDIDATES_MAX = 10_000


class SymbolFrequencies:
    """How many posts hold each punctuation character, from PostgreSQL's statistics, read again every `seconds`."""

    def __init__(self, *, seconds: float = 300, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._read_at: float | None = None
        self._posts_holding: dict[str, float] = {}

    async def candidates(self, database: Database, symbols: Sequence[str]) -> float:
        """About how many posts hold all of `symbols`: the count of the rarest; 0 for a character
        the statistics do not list (rarer than any they do) or when there are none yet."""
        if self._read_at is None or self._clock() - self._read_at >= self._seconds:
            self._read_at = self._clock()
            rows = await database.fetch(statements.SYMBOL_FREQUENCIES)
            self._posts_holding = {}
            if rows and rows[0]["symbols"] is not None:
                listed, posts = rows[0]["symbols"], max(rows[0]["posts"], 0)
                # The frequencies go on with three more numbers (minimum, maximum, nulls): left out.
                for symbol, frequency in zip(listed, rows[0]["frequencies"][: len(listed)], strict=True):
                    self._posts_holding[symbol] = frequency * posts
        return min(self._posts_holding.get(symbol, 0.0) for symbol in symbols)

    def forget(self) -> None:
        """Read the statistics again at the next search (after an ANALYZE, in tests)."""
        self._read_at = None


def whole_table_search(
    folded: str, params: dict[str, Any], *, keyset: bool, on_postgresql: bool, common_symbols: bool = False
) -> tuple[Prepared, dict[str, Any]]:
    """The statement that finds a search's page in the whole table, and its parameters (`params`
    and what it adds): on PostgreSQL, through the index that narrows that search best.
    `common_symbols`: the search's punctuation is in more than SYMBOL_CANDIDATES_MAX titles."""
    if on_postgresql:
        # Punctuation, which trigrams leave out: the titles holding the same (SYMBOL_SEARCH).
        if not common_symbols and (symbols := title_symbols(folded)):
            return statements.SYMBOL_SEARCH[keyset], {**params, "symbols": symbols}
        # Several words: the titles holding the longest of them (WORDS_SEARCH); a deep page is
        # left to the planner, which may walk the feed instead when the words are common.
        words = narrowing_substrings(folded)
        if len(words) >= 2 and params["skip"] + params["limit"] <= statements.SEARCH_WINDOW:
            narrowed = {f"word_{number}": statements.like_pattern(word) for number, word in enumerate(words, 1)}
            return statements.WORDS_SEARCH[len(words), keyset], {**params, **narrowed}
    return statements.LIST_POSTS[True, keyset], params


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

    def clear(self) -> None:
        self._expiry.clear()


class Feed:
    """Pages of the posts a viewer sees, newest first, optionally searched: one per app.

    A search first looks among the newest `statements.SEARCH_WINDOW` posts (one plan for
    every word, see RECENT_SEARCH); when that window holds less than the page, the
    whole-table statement answers, which is exact in every case (`whole_table_search`: on
    PostgreSQL through the index that narrows the search best). Words whose first page
    missed the window lately skip it for `sparse_seconds` (only a shortcut: both paths
    give the same page).
    """

    def __init__(self, *, sparse_seconds: float = 60, sparse_max_words: int = 4096) -> None:
        self.sparse_searches = ExpiringSet(seconds=sparse_seconds, max_keys=sparse_max_words)
        self.symbol_frequencies = SymbolFrequencies()

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
            rows = []
            if skip + limit <= statements.SEARCH_WINDOW and search not in self.sparse_searches:
                rows = await viewer.fetch(statements.RECENT_SEARCH[keyset], params)
                if len(rows) < limit and skip == 0 and not keyset:
                    self.sparse_searches.add(search)
            if len(rows) < limit:  # no window, or it held less than a page: ask the whole table
                rows = await self._whole_table(viewer, folded, params, keyset=keyset)
        if not rows and before_id is not None:
            # An empty keyset page must not hide a bad cursor: say so when that post is gone or not visible.
            try:
                await visible_post(viewer, before_id)
            except NotFound:
                raise InvalidParameter(("query", "before_id"), f"no post {before_id} to page from") from None
        return rows

    async def _whole_table(self, viewer: Viewer, folded: str, params: dict[str, Any], *, keyset: bool) -> Sequence[Row]:
        on_postgresql = viewer.database.dialect == "postgresql"
        symbols = title_symbols(folded) if on_postgresql else []
        common = bool(symbols) and (
            await self.symbol_frequencies.candidates(viewer.database, symbols) > SYMBOL_CANDIDATES_MAX
        )
        found = whole_table_search(folded, params, keyset=keyset, on_postgresql=on_postgresql, common_symbols=common)
        return await viewer.fetch(*found)


async def read_post(viewer: Viewer, post_id: int) -> Row:
    """One post with its owner, votes and the viewer's vote (a row of statements.POST_DETAIL); 404 if not visible."""
    rows = await viewer.fetch(statements.POST_DETAIL, {"post_id": post_id})
    if not rows:
        raise post_not_found(post_id)
    return rows[0]


async def create_post(viewer: Viewer, *, title: str, content: str, published: bool) -> Row:
    """The new post with its owner's columns (a row of statements.CREATE_POST)."""
    params = {"title": title, "title_folded": fold(title), "content": content, "published": published}
    rows = await viewer.fetch(statements.CREATE_POST, params)
    return rows[0]


async def update_post(viewer: Viewer, post: Row, changes: dict[str, Any]) -> Row:
    """Apply `changes` (title, content, published; one left out is kept) to a post of `owned_post`."""
    unchanged = {"title": None, "content": None, "published": None}
    folded = {"title_folded": fold(changes["title"]) if changes.get("title") is not None else None}
    rows = await viewer.database.fetch(
        statements.UPDATE_POST, {**unchanged, **changes, **folded, "post_id": post["id"]}
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
