"""add user table

Revision ID: 94c629164130
Revises: 99a1e2df9afa
Create Date: 2026-11-22 03:55:21.064432

How it was made: hand-written.
What it does: creates the `users` table (email unique, password hash, created_at
defaulting to the database's current time). AUTOINCREMENT on SQLite, so a deleted
account's id (and with it an old token) never passes to a new account.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "94c629164130"
down_revision: str | None = "99a1e2df9afa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("password", sa.String(), nullable=False),
        sa.Column(
            "created_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("users")
