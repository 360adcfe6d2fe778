"""give new posts the second of their time in title_grams

Revision ID: 3f7a9c2e5b18
Revises: e41b7c9d0a52
Create Date: 2026-12-06 00:00:00

How it was made: hand-written (functions and a trigger, which autogenerate does not
compare), then checked with `alembic check` on both databases.
What it does (issue 15: deep pages of a common word on a feed written at thousands of
posts a second), on PostgreSQL:
- `agora_second_buckets_since()`: the moment this revision ran (the start of its
  transaction), as a constant. Every post written since holds its second.
- `agora_second_bucket(timestamptz)`: the element for the second of a moment,
  -2**30 - (epoch second mod 2**30) (app/db/grams.py, `second_element`).
- A BEFORE INSERT OR UPDATE trigger on `posts` that adds that element to `title_grams`
  when the post is that recent and does not hold it yet. Every writer gets it: this
  Agora, an older one during a rolling deploy, the startup fill, COPY. The app's own
  INSERT already runs the element's arithmetic once in the WHEN clause; the function
  only runs for a row that lacks it.
- Posts written between the start of this revision's transaction and its trigger
  (CREATE TRIGGER waits for the INSERTs in flight) get it by an UPDATE after the commit.
Why: GRAMS_WALK takes a 16-second bucket of more than a few thousand posts a second at
a time when its newest posts say the feed is written that fast (app/db/statements.py,
`_walk_step`). Measured on the benchmark's data, a head of 22,948 posts in one 16-second
bucket: `limit=10&skip=300` 2.32 against 1.39 ms, `limit=100` 2.67 against 1.40 ms.
Older posts are not rewritten: a backfill would rewrite every row (79 s and the table's
size again for a million posts, measured) and give the grams index an entry for every
post of a quiet past (a seeded million: 55 to 109 MB), where the walk has no use for it.
The walk takes no second older than `agora_second_buckets_since()`.
CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on `posts` (writes wait, reads go on),
under the migration's lock_timeout.
SQLite: nothing (it searches by scanning; it has no `title_grams`).

Downgrade drops the trigger and the functions, then takes the element out of every post
that holds one, in batches of 10,000 by id, each committed on its own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f7a9c2e5b18"
down_revision: str | None = "e41b7c9d0a52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
# As app/db/grams.py has them today (a revision keeps its own copy).
SECOND_ELEMENT_BASE = -(2**30)
ELEMENT = f"CAST({SECOND_ELEMENT_BASE} - mod(CAST(floor(extract(epoch FROM {{}})) AS BIGINT), {2**30}) AS INTEGER)"
LACKS_ELEMENT = (
    "NEW.title_grams IS NOT NULL AND NEW.created_at >= agora_second_buckets_since() "
    "AND NOT NEW.title_grams @> ARRAY[agora_second_bucket(NEW.created_at)]"
)


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if not _on_postgresql():
        return
    # The moment, fixed in the function's body (format(), so that the offline script does the same).
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'CREATE FUNCTION agora_second_buckets_since() RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "AS %L', format('SELECT timestamptz %L', now())); END $$"
    )
    op.execute(
        "CREATE FUNCTION agora_second_bucket(moment timestamptz) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        f"AS $$ SELECT {ELEMENT.format('moment')} $$"
    )
    # Another second element (an edit of created_at) stays: a step keeps only its own stretch of time.
    op.execute(
        "CREATE FUNCTION agora_add_second_bucket() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.title_grams := NEW.title_grams || agora_second_bucket(NEW.created_at); RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER posts_second_bucket BEFORE INSERT OR UPDATE OF title_grams, created_at ON posts "
        f"FOR EACH ROW WHEN ({LACKS_ELEMENT}) EXECUTE FUNCTION agora_add_second_bucket()"
    )
    with op.get_context().autocommit_block():  # the trigger is committed: no post can lack it after this
        op.execute(
            "UPDATE posts SET title_grams = title_grams WHERE created_at >= agora_second_buckets_since() "
            "AND title_grams IS NOT NULL AND NOT title_grams @> ARRAY[agora_second_bucket(created_at)]"
        )


def downgrade() -> None:
    if not _on_postgresql():
        return
    op.execute("DROP TRIGGER posts_second_bucket ON posts")
    op.execute("DROP FUNCTION agora_add_second_bucket()")
    op.execute("DROP FUNCTION agora_second_bucket(timestamptz)")
    op.execute("DROP FUNCTION agora_second_buckets_since()")
    without = f"ARRAY(SELECT element FROM unnest(title_grams) AS element WHERE element >= {SECOND_ELEMENT_BASE})"
    holds = f"EXISTS (SELECT FROM unnest(posts.title_grams) AS element WHERE element < {SECOND_ELEMENT_BASE})"
    if op.get_context().as_sql:
        op.execute(f"UPDATE posts SET title_grams = {without} WHERE {holds}")
        return
    bind = op.get_bind()
    batch = sa.text(
        f"WITH batch AS (SELECT id FROM posts WHERE id > :after ORDER BY id LIMIT {BATCH}), "
        f"changed AS (UPDATE posts SET title_grams = {without} FROM batch WHERE posts.id = batch.id AND {holds}) "
        "SELECT max(id) FROM batch"
    )
    with op.get_context().autocommit_block():  # each batch commits on its own
        after = 0
        while (last := bind.execute(batch, {"after": after}).scalar()) is not None:
            after = last
