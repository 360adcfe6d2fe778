"""Load a large dataset into a PostgreSQL database built by Agora's migration chain.

    .venv/bin/python bench/seed.py --database-url postgresql://postgres@127.0.0.1:5440/agora_large
    .venv/bin/python bench/seed.py --database-url ... --users 100 --posts 1000 --votes 5000

Users and votes are generated server-side with generate_series; posts are computed here
(with their search grams, app/db/grams.py) and sent by COPY. The default 10,000 users /
1,000,000 posts / 5,000,000 votes load in about a minute and a half. The database is
first upgraded to head, then emptied (TRUNCATE), then loaded and analysed.
Deterministic: the same arguments give the same rows.

- users: user<i>@example.com, all with the password `password123` (one Argon2id hash
  with the production cost, computed once).
- posts: four-word titles from a 64-word vocabulary (each word in about 6 % of titles,
  so searches hit realistically), created one second apart in id order, owners spread
  over all users; `--draft-every N` makes every Nth post a draft (default 0: none, the
  data bench/run.sh measures, on Agora and on the limit server's copy of it).
- votes: distinct (user, post) pairs, every user voting on votes/users posts.
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from app.config import Settings, driver_urls
from app.db.grams import as_array_literal, title_grams
from app.db.migrations import upgrade_to_head
from app.security import Passwords

WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "iris",
    "jasper",
    "kestrel",
    "lagoon",
    "meadow",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "raven",
    "sable",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "acorn",
    "birch",
    "cobalt",
    "dune",
    "eagle",
    "fern",
    "python",
    "rust",
    "golang",
    "kotlin",
    "swift",
    "ruby",
    "haskell",
    "scala",
    "elixir",
    "erlang",
    "ocaml",
    "fastapi",
    "django",
    "flask",
    "postgres",
    "redis",
    "kafka",
    "docker",
    "linux",
    "debian",
    "ubuntu",
    "alpine",
    "nginx",
    "mango",
    "tango",
    "lemon",
    "peach",
    "plum",
    "cherry",
    "grape",
    "melon",
    "olive",
]
assert len(WORDS) == 64
# Already folded (app/db/folding.py), so each title is its own `title_folded`.
assert all(word == word.casefold() for word in WORDS)

PASSWORD = "password123"
# Post i is created i seconds after this.
POSTS_FROM = datetime(2025, 2, 1, tzinfo=UTC)


def log(message: str, started: float) -> None:
    print(f"[seed {time.time() - started:6.1f}s] {message}", flush=True)


def seed(database_url: str, users: int, posts: int, votes: int, draft_every: int = 0) -> None:
    started = time.time()
    votes_per_user = -(-votes // users) if votes else 0
    if votes_per_user > posts:
        sys.exit(f"cannot cast {votes} distinct votes: {users} users x {posts} posts is too few")

    log("upgrading the database to head", started)
    upgrade_to_head(database_url)
    sync_url = driver_urls(database_url)[0].set(drivername="postgresql")
    if sync_url.get_backend_name() != "postgresql":
        sys.exit("the seeder needs PostgreSQL (it generates rows with generate_series)")
    dsn = sync_url.render_as_string(hide_password=False)
    password_hash = Passwords.from_settings(Settings()).hash(PASSWORD)

    # One transaction: if anything fails, the schema and its constraints are as before.
    with psycopg.connect(dsn) as connection:
        connection.execute("TRUNCATE votes, posts, users RESTART IDENTITY CASCADE")
        restore = drop_constraints_and_indexes(connection)
        log(f"tables emptied; {len(restore)} constraints and indexes set aside for the load", started)
        connection.execute(
            """
            INSERT INTO users (email, password, created_at)
            SELECT 'user' || i || '@example.com', %(hash)s,
                   timestamptz '2025-01-01 00:00:00+00' + i * interval '1 second'
            FROM generate_series(1::bigint, %(users)s) AS i
            """,
            {"hash": password_hash, "users": users},
        )
        log(f"{users:,} users loaded", started)
        # Four words picked by multiplicative hashing of the id: deterministic, evenly spread.
        # Written by COPY from here, because `title_grams` (PostgreSQL's search pieces, app/db/grams.py)
        # is computed by the application, as the API computes it for each new post.
        # COPY's text format, written here: no character of these rows needs escaping.
        with connection.cursor().copy(
            "COPY posts (title, title_folded, title_grams, content, published, created_at, owner_id) FROM STDIN"
        ) as copy:
            lines = []
            for i in range(1, posts + 1):
                title = " ".join(WORDS[(i * a // b) % 64] for a, b in ((7, 1), (13, 7), (31, 11), (101, 53)))
                created_at = POSTS_FROM + timedelta(seconds=i)
                content = f"Post number {i} says something about {WORDS[(i * 17) % 64]}."
                published = "t" if draft_every == 0 or i % draft_every != 0 else "f"
                grams = as_array_literal(title_grams(title, created_at))
                owner_id = 1 + (i * 7919) % users
                lines.append(
                    f"{title}\t{title}\t{grams}\t{content}\t{published}\t{created_at.isoformat()}\t{owner_id}\n"
                )
                if len(lines) == 10_000:
                    copy.write("".join(lines))
                    lines.clear()
            copy.write("".join(lines))
        log(f"{posts:,} posts loaded", started)
        if votes:
            # User u votes on posts start(u) + j * stride for j < votes_per_user: distinct per user.
            stride = max(1, posts // votes_per_user)
            connection.execute(
                """
                INSERT INTO votes (user_id, post_id)
                SELECT 1 + k %% %(users)s,
                       1 + ((1 + k %% %(users)s) * 7919 + (k / %(users)s) * %(stride)s) %% %(posts)s
                FROM generate_series(0::bigint, %(votes)s - 1) AS k
                """,
                {"users": users, "posts": posts, "votes": votes, "stride": stride},
            )
            log(f"{votes:,} votes loaded", started)
        for statement in restore:
            connection.execute(statement)
        log("constraints and indexes rebuilt", started)
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in ("users", "posts", "votes"):
            connection.execute(f"VACUUM ANALYZE {table}")
        # Write the load out now, so that a checkpoint does not land in the first
        # measurements instead (bench/run.sh copies this database for the limit server).
        try:
            connection.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            log("CHECKPOINT needs a superuser or pg_checkpoint: skipped", started)
        log("analysed; done", started)


def drop_constraints_and_indexes(connection: psycopg.Connection) -> list[str]:
    """Drop what slows a bulk load (foreign keys, the votes key, secondary indexes).

    Returns the statements that recreate them exactly, read from PostgreSQL's own
    catalog, so the schema after the load is the migrated schema.
    """
    constraints = connection.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid IN ('posts'::regclass, 'votes'::regclass)
          AND (contype = 'f' OR (contype = 'p' AND conrelid = 'votes'::regclass))
        """
    ).fetchall()
    indexes = connection.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename IN ('posts', 'votes')
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """
    ).fetchall()
    for name, _definition in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    for table, name, _definition in constraints:
        connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    # Keys before foreign keys, then indexes.
    ordered = sorted(constraints, key=lambda c: not c[2].startswith("PRIMARY KEY"))
    return [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in ordered] + [
        definition for _name, definition in indexes
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", required=True, help="postgresql://... (its name is not checked: it is emptied)"
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--votes", type=int, default=5_000_000)
    parser.add_argument("--draft-every", type=int, default=0, help="every Nth post is unpublished (0: none)")
    args = parser.parse_args()
    seed(args.database_url, args.users, args.posts, args.votes, args.draft_every)


if __name__ == "__main__":
    main()
