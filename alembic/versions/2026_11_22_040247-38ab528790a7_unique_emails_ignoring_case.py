"""unique emails ignoring case

Revision ID: 38ab528790a7
Revises: 097be2068e8f
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

Re-pointed (2026-12-04): it first came right after 936002196a31; "index the feed and
votes per post" (208054a49a86) and "adopt a course app database" (097be2068e8f) now
stand between them. A database already at this revision or later counts them as done:
the adopt revision does nothing on a database Agora built, and d3a3882d73c8 builds the
feed's indexes where they are missing.
Without blocking traffic (2026-12-04): on PostgreSQL the index is built CONCURRENTLY,
outside the revision's transaction, before the old constraint goes (an instant's
exclusive lock); the downgrade builds the old constraint's index concurrently and
attaches it (ADD CONSTRAINT ... USING INDEX). The schema before and after is unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op, util

from app.db.migrations import (
    ConcurrentIndex,
    build_indexes_concurrently,
    constraint_exists,
    drop_indexes_concurrently,
)

revision: str = "38ab528790a7"
down_revision: str | None = "097be2068e8f"
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
    if op.get_context().dialect.name == "postgresql":
        build_indexes_concurrently(ConcurrentIndex("ix_users_lower_email", "users", "lower(email)", unique=True))
        op.execute("ALTER TABLE users DROP CONSTRAINT uq_users_email")
        return
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(op.f("uq_users_email"), type_="unique")
    op.create_index("ix_users_lower_email", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        build_indexes_concurrently(ConcurrentIndex("uq_users_email", "users", "email", unique=True))
        if not constraint_exists("users", "uq_users_email"):
            op.execute("ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE USING INDEX uq_users_email")
        drop_indexes_concurrently("ix_users_lower_email")
        return
    op.drop_index("ix_users_lower_email", table_name="users")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.create_unique_constraint(op.f("uq_users_email"), ["email"])
