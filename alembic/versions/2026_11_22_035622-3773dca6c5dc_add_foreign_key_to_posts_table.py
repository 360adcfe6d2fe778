"""add foreign-key to posts table

Revision ID: 3773dca6c5dc
Revises: 94c629164130
Create Date: 2026-11-22 03:56:22.871017

How it was made: hand-written.
What it does: adds `posts.owner_id` (NOT NULL) referencing `users.id` with
ON DELETE CASCADE.

Rule for posts that exist before they can have an owner: they are given to one
placeholder account, `ownerless-posts@agora.invalid`, created here only when such
posts exist. Its password field holds "!", which is not a hash of anything, so
nobody can log in as it (and `.invalid` can never be registered). Find its posts
with `SELECT * FROM posts WHERE owner_id = (SELECT id FROM users WHERE email =
'ownerless-posts@agora.invalid')` and reassign them as you see fit.

Downgrade drops the column and the foreign key, then removes the placeholder
account (nothing else refers to it any more).

Without blocking traffic (2026-12-04), on PostgreSQL: the backfill runs in batches of
10,000 posts, each committed on its own; the foreign key and a CHECK (owner_id IS NOT
NULL) are added NOT VALID (an instant's lock) and validated in their own transaction
(a scan that lets reads and writes through); SET NOT NULL then uses the validated
check instead of scanning under an exclusive lock, and the check goes. Each part can
run again after an interruption. The schema it leaves is unchanged; SQLite is as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from app.db.migrations import constraint_exists, validate_constraints

revision: str = "3773dca6c5dc"
down_revision: str | None = "94c629164130"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


PLACEHOLDER_EMAIL = "ownerless-posts@agora.invalid"
# Not a hash of anything: no password can ever verify against it.
UNUSABLE_PASSWORD = "!"


BACKFILL_BATCH = 10_000
NOT_NULL_CHECK = "ck_posts_owner_id_not_null"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        upgrade_postgresql()
        return
    with op.batch_alter_table("posts") as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
    op.execute(
        sa.text(
            "INSERT INTO users (email, password) SELECT :email, :password "
            "WHERE EXISTS (SELECT 1 FROM posts WHERE owner_id IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM users WHERE email = :email)"
        ).bindparams(email=PLACEHOLDER_EMAIL, password=UNUSABLE_PASSWORD)
    )
    op.execute(
        sa.text(
            "UPDATE posts SET owner_id = (SELECT id FROM users WHERE email = :email) WHERE owner_id IS NULL"
        ).bindparams(email=PLACEHOLDER_EMAIL)
    )
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            op.f("fk_posts_owner_id_users"),
            "users",
            ["owner_id"],
            ["id"],
            ondelete="CASCADE",
        )


def upgrade_postgresql() -> None:
    op.execute("ALTER TABLE posts ADD COLUMN IF NOT EXISTS owner_id INTEGER")
    op.execute(
        sa.text(
            "INSERT INTO users (email, password) SELECT :email, :password "
            "WHERE EXISTS (SELECT 1 FROM posts WHERE owner_id IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM users WHERE email = :email)"
        ).bindparams(email=PLACEHOLDER_EMAIL, password=UNUSABLE_PASSWORD)
    )
    backfill = sa.text(
        "UPDATE posts SET owner_id = (SELECT id FROM users WHERE email = :email) "
        "WHERE id IN (SELECT id FROM posts WHERE owner_id IS NULL LIMIT :batch)"
    ).bindparams(email=PLACEHOLDER_EMAIL, batch=BACKFILL_BATCH)
    with op.get_context().autocommit_block():  # each batch commits on its own
        if context.is_offline_mode():
            op.execute(
                sa.text(
                    "UPDATE posts SET owner_id = (SELECT id FROM users WHERE email = :email) WHERE owner_id IS NULL"
                ).bindparams(email=PLACEHOLDER_EMAIL)
            )
        else:
            while op.get_bind().execute(backfill).rowcount:
                pass
    if not constraint_exists("posts", NOT_NULL_CHECK):
        op.execute(f"ALTER TABLE posts ADD CONSTRAINT {NOT_NULL_CHECK} CHECK (owner_id IS NOT NULL) NOT VALID")
    if not constraint_exists("posts", "fk_posts_owner_id_users"):
        op.execute(
            "ALTER TABLE posts ADD CONSTRAINT fk_posts_owner_id_users FOREIGN KEY(owner_id) "
            "REFERENCES users (id) ON DELETE CASCADE NOT VALID"
        )
    validate_constraints("posts", NOT_NULL_CHECK, "fk_posts_owner_id_users")
    op.execute("ALTER TABLE posts ALTER COLUMN owner_id SET NOT NULL")  # proven by the check: no scan
    op.execute(f"ALTER TABLE posts DROP CONSTRAINT {NOT_NULL_CHECK}")


def downgrade() -> None:
    with op.batch_alter_table("posts", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(op.f("fk_posts_owner_id_users"), type_="foreignkey")
        batch_op.drop_column("owner_id")
    op.execute(sa.text("DELETE FROM users WHERE email = :email").bindparams(email=PLACEHOLDER_EMAIL))
