"""add content column to posts table

Revision ID: 99a1e2df9afa
Revises: 44dc769ca3fd
Create Date: 2026-11-22 03:54:19.265833

How it was made: hand-written.
What it does: adds `posts.content` (NOT NULL). Existing posts get the empty string:
the column is added with a temporary server default, which a second batch then
drops (in one SQLite batch the default would be gone before the rows are copied).
Downgrade drops the column and the text in it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "99a1e2df9afa"
down_revision: str | None = "44dc769ca3fd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch_op:
        batch_op.add_column(sa.Column("content", sa.String(), nullable=False, server_default=""))
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("content", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("content")
