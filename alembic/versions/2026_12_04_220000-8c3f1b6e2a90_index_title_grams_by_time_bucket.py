"""index title grams by time bucket

Revision ID: 8c3f1b6e2a90
Revises: 5c1e9a7d2b44
Create Date: 2026-12-04 22:00:00

How it was made: hand-written (the backfill computes in Python, which autogenerate cannot
write), then checked with `alembic check` on both databases.
What it does (issue 15: every kind of search fast on PostgreSQL, app/db/grams.py says how):
- `posts.title_grams` INTEGER[] NULL: the hashed pieces of the folded title (every 3
  characters without a space; 1 and 2 around punctuation; 5 and 7 centred on a space or
  punctuation) and the post's two time buckets (4,096 and 16 seconds of `created_at`),
  written by the application with the title (as `title_folded` is).
  Computing them in the application keeps them out of PostgreSQL's write path: as an
  index expression (an SQL function), they added about 140 µs to each single-row INSERT.
- Existing posts get theirs here, in batches of 10,000 by id, each committed on its own
  (a run that stops is finished by the next one). A post written meanwhile by an older
  Agora (a rolling deploy) gets them from the next Agora that starts
  (`fill_missing_grams`, app/domain/posts.py), through the partial index
  `ix_posts_title_ungrammed` (empty once everything is filled); so do the posts left
  by the offline script (`--sql`), which cannot compute them.
- The column's statistics target is 1,000 (ANALYZE of 1,000,000 posts: 3.7 s instead of about 1 s),
  so that PostgreSQL's statistics tell the rare pieces of titles from the common ones.
- `ix_posts_title_grams`: a GIN index of the column, built CONCURRENTLY, with fast update
  on and a pending list of 256 kB (measured with 16 writers: as many INSERTs a second as
  without the index; with fast update off, POST /posts/ fell from 2,431 to 1,852 req/s).
- It replaces `ix_posts_title_folded_trgm` (pg_trgm), `ix_posts_title_symbols` and
  `ix_posts_title_unfolded` (its rows are among the new partial index's), each dropped
  CONCURRENTLY after the new indexes are built. The function `agora_title_symbols` stays
  (nothing uses it any more; revision 5c1e9a7d2b44's downgrade drops it).
SQLite: nothing (it searches by scanning; the column does not exist there).

Downgrade builds the three old indexes again (concurrently), then drops the new ones and
the column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.folding import fold
from app.db.grams import as_array_literal, title_grams
from app.db.migrations import ConcurrentIndex, build_indexes_concurrently, drop_indexes_concurrently

revision: str = "8c3f1b6e2a90"
down_revision: str | None = "5c1e9a7d2b44"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 10_000
GRAMS_STATISTICS_TARGET = 1000
GRAMS = ConcurrentIndex(
    "ix_posts_title_grams", "posts", "title_grams", using="gin", storage="fastupdate = on, gin_pending_list_limit = 256"
)
UNGRAMMED = ConcurrentIndex("ix_posts_title_ungrammed", "posts", "id", where="title_grams IS NULL")
OLD_TRIGRAMS = ConcurrentIndex("ix_posts_title_folded_trgm", "posts", "title_folded gin_trgm_ops", using="gin")
OLD_SYMBOLS = ConcurrentIndex("ix_posts_title_symbols", "posts", "agora_title_symbols(title_folded)", using="gin")
OLD_UNFOLDED = ConcurrentIndex("ix_posts_title_unfolded", "posts", "id", where="title_folded IS NULL")


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if not _on_postgresql():
        return
    # A nullable column without a default: added to the catalog only (no rewrite).
    # IF NOT EXISTS: a run that stopped after a committed batch starts again here.
    op.execute("ALTER TABLE posts ADD COLUMN IF NOT EXISTS title_grams INTEGER[]")
    # ANALYZE keeps 10 x this many of the most common pieces: the least common of them is
    # then about 0.04 % of the posts (0.4 % at the default 100), which is how finely a
    # search is told rare from common (app/domain/posts.py, `plan_search`).
    op.execute(f"ALTER TABLE posts ALTER COLUMN title_grams SET STATISTICS {GRAMS_STATISTICS_TARGET}")
    with op.get_context().autocommit_block():  # each batch commits on its own
        _fill_existing_posts()
    build_indexes_concurrently(UNGRAMMED, GRAMS)
    drop_indexes_concurrently(OLD_TRIGRAMS.name, OLD_SYMBOLS.name, OLD_UNFOLDED.name)


def _fill_existing_posts() -> None:
    if op.get_context().as_sql:
        return  # the next Agora to start fills them (see the docstring)
    bind = op.get_bind()
    select_batch = sa.text(
        "SELECT id, title, created_at FROM posts WHERE id > :after AND title_grams IS NULL ORDER BY id LIMIT :batch"
    )
    # `AND title = ...`: a post edited since it was read keeps what its edit wrote.
    # title_folded too: a post an older Agora wrote during the last deploy may have none yet.
    update_batch = sa.text(
        "UPDATE posts SET title_folded = v.folded, title_grams = CAST(v.grams AS INTEGER[]) "
        "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:titles AS VARCHAR[]), CAST(:folded AS VARCHAR[]), "
        "CAST(:grams AS VARCHAR[])) AS v(id, title, folded, grams) WHERE posts.id = v.id AND posts.title = v.title"
    )
    after = 0
    while rows := bind.execute(select_batch, {"after": after, "batch": BACKFILL_BATCH}).all():
        folded = [fold(title) for _, title, _ in rows]
        bind.execute(
            update_batch,
            {
                "ids": [id_ for id_, _, _ in rows],
                "titles": [title for _, title, _ in rows],
                "folded": folded,
                "grams": [
                    as_array_literal(title_grams(text, created_at))
                    for text, (_, _, created_at) in zip(folded, rows, strict=True)
                ],
            },
        )
        after = rows[-1][0]


def downgrade() -> None:
    if not _on_postgresql():
        return
    build_indexes_concurrently(OLD_UNFOLDED, OLD_SYMBOLS, OLD_TRIGRAMS)
    drop_indexes_concurrently(GRAMS.name, UNGRAMMED.name)
    op.drop_column("posts", "title_grams")
