"""EXPLAIN ANALYZE of the feed's statements, exactly as the app sends them (asyncpg SQL, bound values).

.venv/bin/python bench/explain.py --database-url postgresql://postgres@127.0.0.1:5440/agora_large
"""

import argparse
import re

import psycopg

from app.config import driver_urls
from app.db import statements as queries
from app.db.backends import Prepared

# Who reads: seeded user 1 with a token of its first generation, never logged out.
VIEWER: dict[str, object] = {"viewer_id": 1, "viewer_generation": 0, "viewer_jti": "AAAAAAAAAAAAAAAAAAAAAA"}

CASES: list[tuple[str, Prepared, dict[str, object]]] = [
    ("list, first page", queries.LIST_POSTS[False, False], {**VIEWER, "limit": 10, "skip": 0}),
    ("list, skip=990", queries.LIST_POSTS[False, False], {**VIEWER, "limit": 10, "skip": 990}),
    (
        "list, keyset page ~100,000 deep",
        queries.LIST_POSTS[False, True],
        {**VIEWER, "limit": 10, "skip": 0, "before_id": 1},
    ),
    (
        "search 'python' among the newest posts first (common word: the page is found there)",
        queries.RECENT_SEARCH[False],
        {**VIEWER, "limit": 10, "skip": 0, "pattern": "%python%"},
    ),
    (
        "search 'zzq' among the newest posts first (no match: the endpoint then asks the whole table)",
        queries.RECENT_SEARCH[False],
        {**VIEWER, "limit": 10, "skip": 0, "pattern": "%zzq%"},
    ),
    (
        "search 'python' in the whole table (common word)",
        queries.LIST_POSTS[True, False],
        {**VIEWER, "limit": 10, "skip": 0, "pattern": "%python%"},
    ),
    (
        "search 'zzq' in the whole table (no match)",
        queries.LIST_POSTS[True, False],
        {**VIEWER, "limit": 10, "skip": 0, "pattern": "%zzq%"},
    ),
    ("get one", queries.POST_DETAIL, {**VIEWER, "post_id": 500_000}),
    (
        "one author's posts, first page",
        queries.OWNER_POSTS[False, False],
        {**VIEWER, "limit": 10, "skip": 0, "owner_id": 2},
    ),
    (
        "one author's posts, keyset page",
        queries.OWNER_POSTS[False, True],
        {**VIEWER, "limit": 10, "skip": 0, "owner_id": 2, "before_id": 1},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    dsn = driver_urls(args.database_url)[0].set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        deepest = connection.execute("SELECT max(id) - 100000 FROM posts").fetchone()
        for title, prepared, params in CASES:
            if "keyset" in title and deepest:
                params = {**params, "before_id": deepest[0]}
            sql = _bind(prepared, params)
            # Warm first: a connection's first run of a statement also loads catalog caches,
            # which a pooled connection serving requests has long done.
            for _ in range(3):
                connection.execute(sql).fetchall()
            plan = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").fetchall()
            print(f"### {title}\n\n```")
            print("\n".join(row[0] for row in plan))
            print("```\n")


def _bind(prepared: Prepared, params: dict[str, object]) -> str:
    """asyncpg's $n placeholders (and their casts) replaced by the values, as SQL literals."""

    def literal(match: re.Match[str]) -> str:
        value = params[prepared.parameter_names[int(match.group(1)) - 1]]
        return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(value)

    return re.sub(r"\$(\d+)(::\w+)?", literal, prepared.asyncpg_sql)


if __name__ == "__main__":
    main()
