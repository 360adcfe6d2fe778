"""create posts table

Revision ID: 44dc769ca3fd
Revises:
Create Date: 2026-11-22 03:53:17.433288

How it was made: hand-written.
What it does: creates the `posts` table with `id` and `title` only, as the course's
first step does. AUTOINCREMENT on SQLite, so ids are never reused after a delete.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "44dc769ca3fd"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("posts")
