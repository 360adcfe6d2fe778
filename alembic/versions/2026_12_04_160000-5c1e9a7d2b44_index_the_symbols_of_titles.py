"""index the symbols of titles

Revision ID: 5c1e9a7d2b44
Revises: 0790f43abbfb
Create Date: 2026-12-04 16:00:00

How it was made: hand-written (a function and an expression index on PostgreSQL only),
then checked with `alembic check` on both databases.
What it does (issue 15: a search for `%`, `_`, `\\`, `c:\\` or `a_b` must be fast): the
trigram index cannot narrow such a search (pg_trgm keeps letters and digits only), so it
read every title, up to SEARCH_TIMEOUT_MS. On PostgreSQL:
- `agora_title_symbols(text)`: the distinct ASCII punctuation characters of a text
  (Python's `string.punctuation`, the 32 of them, written out below), as a text[];
  IMMUTABLE, as an index expression must be.
- `ix_posts_title_symbols`: a GIN index of `agora_title_symbols(title_folded)`, built
  CONCURRENTLY (reads and writes go on). A search holding such characters finds its
  candidates as the titles holding all of them (`@>`), then checks each candidate
  exactly (app/domain/posts.py, `Feed`).
SQLite: nothing (it scans, as before). Downgrade drops the index concurrently, then the
function.
"""

from collections.abc import Sequence

from alembic import op

from app.db.migrations import ConcurrentIndex, build_indexes_concurrently, drop_indexes_concurrently

revision: str = "5c1e9a7d2b44"
down_revision: str | None = "0790f43abbfb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TITLE_SYMBOLS = ConcurrentIndex("ix_posts_title_symbols", "posts", "agora_title_symbols(title_folded)", using="gin")

# string.punctuation as an SQL string literal: ' doubled, and no backslash escapes
# (standard_conforming_strings, on by default since PostgreSQL 9.1).
CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION agora_title_symbols(title text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT ARRAY(
        SELECT DISTINCT symbol
        FROM unnest(string_to_array(title, NULL)) AS symbol
        WHERE strpos('!"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~', symbol) > 0
    )
$$
"""


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if not _on_postgresql():
        return
    op.execute(CREATE_FUNCTION)
    build_indexes_concurrently(TITLE_SYMBOLS)


def downgrade() -> None:
    if not _on_postgresql():
        return
    drop_indexes_concurrently(TITLE_SYMBOLS.name)
    op.execute("DROP FUNCTION IF EXISTS agora_title_symbols(text)")
