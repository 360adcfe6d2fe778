"""add last few columns to posts table

Revision ID: f537ca5b8316
Revises: 3773dca6c5dc
Create Date: 2026-11-22 03:57:24.705535

How it was made: hand-written.
What it does: adds `posts.published` (NOT NULL, default true) and `posts.created_at`
(NOT NULL, default the database's current time). Existing posts become published,
with the time of the migration as their creation time. The defaults are portable
expressions (`sa.true()`, `sa.func.now()`), not the course's `'TRUE'` / `now()`
strings, which SQLite stores as text or cannot run. Downgrade drops both columns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f537ca5b8316"
down_revision: str | None = "3773dca6c5dc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A non-constant default cannot be added by SQLite's ALTER TABLE: batch mode
    # rebuilds the table there and fills the new columns from their defaults.
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("published", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(
            sa.Column(
                "created_at",
                sa.TIMESTAMP(timezone=True),
                server_default=sa.func.now(),
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("created_at")
        batch_op.drop_column("published")
