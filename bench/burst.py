"""A burst of new posts at the head of the feed, in one or more databases alike.

    .venv/bin/python -m bench.burst --database-url postgresql://postgres@127.0.0.1:5440/agora_large \
        --database-url postgresql://postgres@127.0.0.1:5440/limit_large [--posts 20000] [--matching WORD]
    .venv/bin/python -m bench.burst --database-url ... --remove

Issue 15 measures every class of search "as seeded, and again after 20,000 new posts that
match none of the words": such a burst fills the newest part of the feed, where a search
looks first (RECENT_SEARCH, the newest 500 posts), with posts no query of the benchmark
finds, so every search must look past them. Its titles are four words of BURST_WORDS,
which hold no word of bench/seed.py's vocabulary, no three-letter start of one (the
fragment class) and no word of the absent class (bench/lua/search_classes.lua): the
import checks this. `--matching WORD` gives the issue's other burst, every title holding
WORD (one of the four words).

The posts are newer than every post already there (created_at from the newest post of
all the databases, or now, whichever is later, one millisecond apart, in id order as the
seed's), published, owned by users spread as the seed spreads them; written with
`title_folded`, the casefolded title that searches match (app/db/folding.py), and on a
database that has it, `title_grams` (app/db/grams.py), as the API writes them. Each
database gets the same rows, so the servers compared see the same feed. Statistics are
left as they are: 20,000 rows of 1,000,000 is below autovacuum's 10 % threshold for an
ANALYZE, so a real burst is planned with the statistics of before it too.

`--remove` deletes every post a burst wrote (their content says so) and VACUUMs posts, so
the feed index holds no dead entries at its head: a database used with `bench/run.sh
--no-seed` is then as before the burst.
"""

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from app.config import driver_urls
from app.db.folding import fold
from app.db.grams import title_grams

# The sibling modules by their own names, as mypy sees bench/ (a directory of scripts, no package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed import WORDS

# Nouns of another topic; each title is four of them.
BURST_WORDS = [
    "quill",
    "tofu",
    "vortex",
    "bison",
    "cactus",
    "dahlia",
    "egret",
    "falcon",
    "gecko",
    "heron",
    "igloo",
    "jackal",
    "koala",
    "lotus",
    "moose",
    "newt",
    "otter",
    "puffin",
    "quokka",
    "robin",
    "squid",
    "toucan",
    "urchin",
    "vulture",
    "zebra",
    "bagel",
    "donut",
    "flute",
    "guitar",
    "kite",
    "mitten",
    "thimble",
]
assert len(BURST_WORDS) == 32

# What the content of a burst's post starts with: how --remove finds them.
MARK = "bench/burst.py:"


def _absent_words() -> list[str]:
    """The fixed words of the absent class, read from the wrk scripts (one source of truth)."""
    lua = (Path(__file__).resolve().parent / "lua" / "search_classes.lua").read_text()
    found = re.search(r"local absent = \{([^}]*)\}", lua)
    return re.findall(r'"([^"]*)"', found.group(1)) if found else []


def _check_burst_words() -> None:
    """No query of the benchmark's classes may find a post of a non-matching burst."""
    forbidden = set(WORDS) | {word[:3] for word in WORDS} | set(_absent_words())
    clashes = sorted(f"{burst} holds {word}" for burst in BURST_WORDS for word in forbidden if word in burst)
    if clashes:
        raise AssertionError(f"burst words a search would find: {', '.join(clashes)}")
    # The special class looks for %, _ and \ (and phrases need a space between seed words).
    if not all(re.fullmatch(r"[a-z]+", word) for word in BURST_WORDS):
        raise AssertionError("burst words are lowercase letters only")


_check_burst_words()


def titles(count: int, matching: str | None) -> list[str]:
    """`count` titles, deterministic; with `matching`, that word is one of each title's four."""
    made = []
    for i in range(1, count + 1):
        # Multiplicative hashing of the index, as the seed picks its words: evenly spread.
        words = [BURST_WORDS[(i * 7 + k * (i // 3 + 5)) % len(BURST_WORDS)] for k in range(4)]
        if matching is not None:
            words[i % 4] = matching
        made.append(" ".join(words))
    return made


def _dsn(database_url: str) -> str:
    return driver_urls(database_url)[0].set(drivername="postgresql").render_as_string(hide_password=False)


def insert(database_urls: list[str], count: int, matching: str | None = None) -> None:
    """Write the same `count` new posts into every database, newer than any post of any of them."""
    dsns = [_dsn(url) for url in database_urls]
    start = datetime.now(UTC)
    for dsn in dsns:
        with psycopg.connect(dsn) as connection:
            newest = connection.execute("SELECT max(created_at) FROM posts").fetchone()
            if newest and newest[0] is not None and newest[0] >= start:
                start = newest[0]
    made = titles(count, matching)
    for url, dsn in zip(database_urls, dsns, strict=True):
        clock = time.monotonic()
        # One transaction: a failed burst leaves the database as it was.
        with psycopg.connect(dsn) as connection:
            users = connection.execute("SELECT count(*) FROM users").fetchone()
            if not users or not users[0]:
                raise SystemExit(f"{url}: no users to own the posts (seed it first)")
            owners = connection.execute("SELECT id FROM users ORDER BY id").fetchall()
            first = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM posts").fetchone()
            grams = connection.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = 'posts' AND column_name = 'title_grams'"
            ).fetchone()
            columns = "title, title_folded, content, published, created_at, owner_id" + (
                ", title_grams" if grams else ""
            )
            with connection.cursor() as cursor, cursor.copy(f"COPY posts ({columns}) FROM STDIN") as copy:
                for i, title in enumerate(made, 1):
                    owner = owners[(i * 7919) % len(owners)][0]
                    created = start + timedelta(milliseconds=i)
                    content = f"{MARK} post {i} of a burst of {count}."
                    row = (title, fold(title), content, True, created, owner)
                    # As the API writes a post: its search pieces and time bucket (app/db/grams.py).
                    copy.write_row((*row, title_grams(fold(title), created)) if grams else row)
            if matching is None:
                # The promise: no title of the burst holds a word of the seed's vocabulary.
                found = connection.execute(
                    "SELECT count(*) FROM posts WHERE id >= %s AND title_folded LIKE ANY(%s)",
                    (first[0] if first else 1, [f"%{word}%" for word in WORDS]),
                ).fetchone()
                if found and found[0]:
                    raise SystemExit(f"{url}: {found[0]} burst posts hold a seed word (rolled back)")
        what = f"holding {matching!r}" if matching is not None else "matching none of the seed's words"
        took = time.monotonic() - clock
        print(
            f"[burst] {url.rsplit('/', 1)[-1]}: {count:,} posts {what}, at the head of the feed, in {took:.1f}s",
            flush=True,
        )


def remove(database_urls: list[str]) -> None:
    """Delete the posts of every burst, then VACUUM posts (no dead entries left at the feed's head)."""
    for url in database_urls:
        with psycopg.connect(_dsn(url), autocommit=True) as connection:
            deleted = connection.execute("DELETE FROM posts WHERE content LIKE %s", (MARK + "%",)).rowcount
            connection.execute("VACUUM posts")
        print(f"[burst] {url.rsplit('/', 1)[-1]}: {deleted:,} burst posts removed, posts vacuumed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", action="append", required=True, help="repeat it: every database gets the same posts"
    )
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--matching", metavar="WORD", help="every title holds WORD (default: none holds a seed word)")
    parser.add_argument("--remove", action="store_true", help="delete the posts of earlier bursts instead")
    args = parser.parse_args()
    if args.remove:
        remove(args.database_url)
        return
    if args.posts < 1:
        parser.error("--posts must be at least 1")
    if args.matching is not None and (not args.matching.strip() or len(args.matching) > 100):
        parser.error("--matching takes a word of 1 to 100 characters")
    insert(args.database_url, args.posts, args.matching)


if __name__ == "__main__":
    main()
