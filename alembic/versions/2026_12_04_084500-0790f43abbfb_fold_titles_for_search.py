"""fold titles for search

Revision ID: 0790f43abbfb
Revises: b470f026aa90
Create Date: 2026-12-04 08:45:00

How it was made: hand-written (the backfill computes in Python, which autogenerate
cannot write), then checked with `alembic check`.
What it does (issue 15: one definition of a case-insensitive search, app/db/folding.py):
- `posts.title_folded` VARCHAR NULL: each title with full Unicode case folding
  (Python's `str.casefold`), written by the application with the title. Searches match
  against it, the same way on SQLite and PostgreSQL.
- Existing posts are folded here, in batches of 10,000 by id, each committed on its own
  (a run that stops is finished by the next one: it folds what is still NULL). A post
  written meanwhile by an older Agora (a rolling deploy) is folded by the next Agora
  that starts (`fold_missing_titles`, app/domain/posts.py), which finds such rows through
  the partial index `ix_posts_title_unfolded` (empty once everything is folded). The
  offline script (`--sql`) leaves them to that pass: SQL cannot compute the folding.
- PostgreSQL: a GIN trigram index on `title_folded` replaces the one on `title`
  (`ix_posts_title_trgm`, which served ILIKE), both built and dropped CONCURRENTLY.
The column stays NULL-able: an older Agora still serving during the deploy inserts
posts without it, and must not fail.

Downgrade drops the new indexes and the column, and builds `ix_posts_title_trgm` again
(concurrently) on PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.folding import fold
from app.db.migrations import ConcurrentIndex, build_indexes_concurrently, drop_indexes_concurrently

revision: str = "0790f43abbfb"
down_revision: str | None = "b470f026aa90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 10_000
FOLDED_TRIGRAMS = ConcurrentIndex("ix_posts_title_folded_trgm", "posts", "title_folded gin_trgm_ops", using="gin")
OLD_TRIGRAMS = ConcurrentIndex("ix_posts_title_trgm", "posts", "title gin_trgm_ops", using="gin")
UNFOLDED = "ix_posts_title_unfolded"


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL adds it to the catalog only (no
    # rewrite; the exclusive lock lasts an instant, asked for in short attempts by env.py).
    if _on_postgresql():
        # IF NOT EXISTS: a run that stopped after the first batch committed starts again here.
        op.execute("ALTER TABLE posts ADD COLUMN IF NOT EXISTS title_folded VARCHAR")
        with op.get_context().autocommit_block():  # each batch commits on its own
            _fold_existing_titles()
        # Partial: it holds only the posts still to fold, and is empty afterwards.
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {UNFOLDED}")
            op.execute(f"CREATE INDEX CONCURRENTLY {UNFOLDED} ON posts (id) WHERE title_folded IS NULL")
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        build_indexes_concurrently(FOLDED_TRIGRAMS)
        drop_indexes_concurrently(OLD_TRIGRAMS.name)
    else:
        op.execute("ALTER TABLE posts ADD COLUMN title_folded VARCHAR")
        _fold_existing_titles()
        op.execute(f"CREATE INDEX {UNFOLDED} ON posts (id) WHERE title_folded IS NULL")


def _fold_existing_titles() -> None:
    if op.get_context().as_sql:
        return  # the next Agora to start folds them (see the docstring)
    bind = op.get_bind()
    select_batch = sa.text(
        "SELECT id, title FROM posts WHERE id > :after AND title_folded IS NULL ORDER BY id LIMIT :batch"
    )
    # `AND title = ...`: a post edited since it was read keeps the folding its edit wrote.
    if _on_postgresql():  # one statement per batch (it commits on its own)
        update_batch = sa.text(
            "UPDATE posts SET title_folded = v.folded "
            "FROM unnest(CAST(:ids AS integer[]), CAST(:titles AS varchar[]), CAST(:folded AS varchar[])) "
            "AS v(id, title, folded) WHERE posts.id = v.id AND posts.title = v.title"
        )
    else:
        update_one = sa.text("UPDATE posts SET title_folded = :folded WHERE id = :id AND title = :title")
    after = 0
    while rows := bind.execute(select_batch, {"after": after, "batch": BACKFILL_BATCH}).all():
        if _on_postgresql():
            ids, titles = [row[0] for row in rows], [row[1] for row in rows]
            bind.execute(update_batch, {"ids": ids, "titles": titles, "folded": [fold(t) for t in titles]})
        else:
            bind.execute(update_one, [{"id": id_, "title": title, "folded": fold(title)} for id_, title in rows])
        after = rows[-1][0]


def downgrade() -> None:
    if _on_postgresql():
        build_indexes_concurrently(OLD_TRIGRAMS)
        drop_indexes_concurrently(FOLDED_TRIGRAMS.name, UNFOLDED)
    else:
        op.execute(f"DROP INDEX IF EXISTS {UNFOLDED}")
    # SQLite (>= 3.35) drops the column in place, without a table rebuild.
    op.drop_column("posts", "title_folded")
