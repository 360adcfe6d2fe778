"""What PostgreSQL's search index holds of a title: `posts.title_grams` (revision 8c3f1b6e2a90).

A search `q` matches a title when `fold(q)` is a substring of `fold(title)` (app/db/folding.py).
Every piece `grams()` cuts from a text is cut from a substring of it, so the pieces of a
search are among the pieces of every title that matches it: the titles holding all of
them (a GIN index answers that) are the candidates, and each is then checked exactly
with LIKE. The pieces never decide a match, only narrow the titles to check.

The pieces of a folded text, by Unicode code point:
- every substring of 3 characters without a space;
- every substring of 1 and 2 characters holding ASCII punctuation and no space (`%`, `c:`),
  so that a short search for symbols is narrowed too;
- every substring of 5 and of 7 characters centred on a space or an ASCII punctuation
  character (`er ba`, `ber bas`): these span where words meet, so two common words
  typed together (`amber basil`) narrow to the titles holding them side by side.
Every piece is an entry per post for the index to add, so a plain word gives only its
3-character pieces: on the benchmark's titles, 19 pieces a title; with every 1, 2 and
3-character substring (67 pieces), POST /posts/ was 25 % slower than with none. A search
with no piece at all (one or two letters or digits, or three with a space among them)
cannot be narrowed by the index: the newest posts, then the planner, answer it.
Each piece is stored as a 31-bit hash (CRC-32), which keeps the column and the index small;
two pieces sharing a hash only add candidates, which the exact check removes.

The column also holds two negative numbers, the post's time buckets (`bucket_elements`):
which 4,096-second stretch of `created_at` it was written in, and which 16-second one. A
search for a common word walks the buckets newest first (GRAMS_WALK) and finds each
bucket's matches through the same index, so it never steps over posts that match nothing
one by one; where a 4,096-second bucket holds more than a few thousand posts (a busy
hour), the walk takes it 16 seconds at a time, so that no step reads too many matches.

Posts written since revision 3f7a9c2e5b18 hold a third one, the second of `created_at`
(`second_element`), which a trigger of that revision adds to every row it writes: where a
16-second bucket holds tens of thousands of posts (a feed written at thousands a second),
the walk takes it a second at a time. Older posts do not hold it, and the walk takes no
second older than the revision (`agora_second_buckets_since()`, SQL).
"""

import string
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

# Characters a 5- or 7-character piece is centred on: where words meet, or symbols sit.
GRAM_CENTRES = frozenset(" " + string.punctuation)
SYMBOLS = frozenset(string.punctuation)
AROUND_CENTRES = (5, 7)

BUCKET_SECONDS = 4096
FINE_BUCKET_SECONDS = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def gram_hash(gram: str) -> int:
    """A piece as the column stores it: the CRC-32 of its UTF-8 bytes, in 31 bits (0 and up)."""
    return zlib.crc32(gram.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF


def gram_pieces(folded: str) -> set[str]:
    """The pieces of a folded text (see the module's docstring), as text."""
    length = len(folded)
    pieces = {folded[start : start + 3] for start in range(length - 2)}
    if " " in folded:
        pieces = {piece for piece in pieces if " " not in piece}
    if not SYMBOLS.isdisjoint(folded):  # rare in titles: only then look for short pieces
        for size in (1, 2):
            for start in range(length - size + 1):
                piece = folded[start : start + size]
                if " " not in piece and not SYMBOLS.isdisjoint(piece):
                    pieces.add(piece)
    for centre in (index for index, character in enumerate(folded) if character in GRAM_CENTRES):
        for size in AROUND_CENTRES:
            start = centre - size // 2
            if start >= 0 and start + size <= length:
                pieces.add(folded[start : start + size])
    return pieces


def grams(folded: str) -> list[int]:
    """The hashed pieces of a folded text, sorted and distinct: what `title_grams` holds of a
    title, and what a search looks up (every title that matches holds all of a search's)."""
    return sorted({gram_hash(piece) for piece in gram_pieces(folded)})


def bucket_of(created_at: datetime, seconds: int = BUCKET_SECONDS) -> int:
    """The time bucket of a moment: whole `seconds` since 1970 (floor), exact to the microsecond."""
    return (created_at - _EPOCH) // timedelta(seconds=seconds)


def bucket_elements(created_at: datetime) -> list[int]:
    """How `title_grams` holds a post's time buckets: negative numbers, never a piece's hash (0 and
    up); a BUCKET_SECONDS bucket odd (-1 - 2n), a FINE_BUCKET_SECONDS one even (-2 - 2n)."""
    return [-1 - 2 * bucket_of(created_at), -2 - 2 * bucket_of(created_at, FINE_BUCKET_SECONDS)]


def title_grams(folded_title: str, created_at: datetime) -> list[int]:
    """All of `title_grams` for a post: its buckets and its pieces (as revision 8c3f1b6e2a90 and the
    seed write it; the API writes the pieces and lets PostgreSQL add the buckets of now())."""
    return [*bucket_elements(created_at), *grams(folded_title)]


# The second of created_at, below every other element: -2**30 - (epoch second mod 2**30), so
# that it wraps every 34 years (a step keeps only its own stretch of time, so a wrapped
# second's posts are read and left out, never taken). The 16-second elements stay above
# -2**30 until 2106.
SECOND_ELEMENT_BASE = -(2**30)


def second_element(created_at: datetime) -> int:
    """The element for the second of `created_at` that revision 3f7a9c2e5b18's trigger adds."""
    return SECOND_ELEMENT_BASE - bucket_of(created_at, 1) % 2**30


def second_element_sql(second: str) -> str:
    """SQL for `second_element`, `second` an SQL number of whole seconds since 1970."""
    return f"CAST({SECOND_ELEMENT_BASE} - mod(CAST({second} AS BIGINT), {2**30}) AS INTEGER)"


def bucket_elements_sql(moment: str) -> str:
    """SQL for `bucket_elements(moment)` as an integer[], `moment` an SQL timestamptz (exact: epoch as numeric)."""
    epoch = f"extract(epoch FROM {moment})"
    return (
        f"ARRAY[CAST(-1 - 2 * floor({epoch} / {BUCKET_SECONDS}) AS INTEGER), "
        f"CAST(-2 - 2 * floor({epoch} / {FINE_BUCKET_SECONDS}) AS INTEGER)]"
    )


def as_array_literal(elements: Iterable[int]) -> str:
    """A PostgreSQL array literal (`{1,2,3}`), to pass many arrays of different lengths in one parameter."""
    return "{" + ",".join(map(str, elements)) + "}"
