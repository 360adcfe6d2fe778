"""unique emails ignoring case

Revision ID: 38ab528790a7
Revises: 936002196a31
Create Date: 2026-11-22 04:02:47.649496

How it was made: started with `alembic revision --autogenerate` (which saw only the
dropped constraint: SQLite cannot reflect expression indexes), finished by hand.
What it does: replaces the case-sensitive unique constraint on `users.email` with a
unique index on `lower(email)`, so Alice@example.com and alice@example.com are one
account. Addresses keep the capitalisation they were registered with.

Rule for existing rows: nothing is changed or deleted. If some addresses already
exist more than once ignoring case, the upgrade stops before touching the schema
and lists them; merge or rename those accounts, then run it again.
Downgrade restores the plain unique constraint (which the data satisfies).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op, util

revision: str = "38ab528790a7"
down_revision: str | None = "936002196a31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if not context.is_offline_mode():
        duplicates = (
            op.get_bind()
            .execute(sa.text("SELECT lower(email) FROM users GROUP BY lower(email) HAVING count(*) > 1 ORDER BY 1"))
            .scalars()
            .all()
        )
        if duplicates:
            raise util.CommandError(
                "Cannot make emails unique ignoring case: these addresses are registered more than once "
                f"with different capitalisation: {', '.join(duplicates)}. Merge or rename those accounts "
                "(e.g. UPDATE users SET email = ... WHERE id = ...), then run the upgrade again."
            )
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(op.f("uq_users_email"), type_="unique")
    op.create_index("ix_users_lower_email", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("ix_users_lower_email", table_name="users")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.create_unique_constraint(op.f("uq_users_email"), ["email"])
