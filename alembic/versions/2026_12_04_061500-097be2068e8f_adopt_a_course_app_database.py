"""adopt a course app database

Revision ID: 097be2068e8f
Revises: 208054a49a86
Create Date: 2026-12-04 06:15:00.000000

How it was made: hand-written.
What it does: on a database the course app built (PostgreSQL), gives the constraints
Agora's names; on a database Agora built, and on SQLite, nothing. No row changes.

A course app database stands at the course's last revision, c47ecbf163d4 "add phone
number", whose schema is Agora's 936002196a31 except for the constraint names (the
course lets PostgreSQL name them). env.py reads such a database as 936002196a31, after
checking that its schema is exactly the course's (app/db/adoption.py); 208054a49a86
indexes its feed, and this revision then renames what still has the course's name:
- posts_pkey, users_pkey, votes_pkey, users_email_key: with ALTER INDEX ... RENAME,
  which locks only the index, not the table;
- post_users_fk, votes_user_id_fkey, votes_post_id_fkey: with ALTER TABLE ... RENAME
  CONSTRAINT, which needs the table's exclusive lock for an instant (env.py asks for it
  in short attempts; the feed's indexes keep the API's reads short enough to let it through).
It marks the database adopted (a comment on alembic_version).

Downgrade, on an adopted database only: gives the constraints their course names back
and removes the mark. Going on to 936002196a31 (the way back: `alembic downgrade
936002196a31`), env.py leaves alembic_version at c47ecbf163d4, where the course app's
own Alembic takes over; Agora takes such a database no lower.
"""

from collections.abc import Sequence

from alembic import context, op

from app.db.adoption import ADOPTED_MARKER, CONSTRAINT_NAMES, agora_named, course_named, is_adopted

revision: str = "097be2068e8f"
down_revision: str | None = "208054a49a86"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _applies() -> bool:
    return op.get_context().dialect.name == "postgresql" and not context.is_offline_mode()


def upgrade() -> None:
    if not _applies():
        return  # offline scripts and SQLite: only databases Agora built, which have Agora's names
    found = set(course_named(op.get_bind()))
    if not found:
        return
    op.execute(f"COMMENT ON TABLE alembic_version IS '{ADOPTED_MARKER}'")
    for _table, course, agora, kind in CONSTRAINT_NAMES:
        if kind != "f" and course in found:
            op.execute(f"ALTER INDEX {course} RENAME TO {agora}")
    for table, course, agora, kind in CONSTRAINT_NAMES:
        if kind == "f" and course in found:
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {course} TO {agora}")


def downgrade() -> None:
    if not _applies():
        return
    connection = op.get_bind()
    if not (is_adopted(connection) or course_named(connection)):
        return  # a database Agora built
    present = set(agora_named(connection))
    for table, course, agora, kind in CONSTRAINT_NAMES:
        if agora not in present:
            continue
        if kind == "f":
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {agora} TO {course}")
        else:
            op.execute(f"ALTER INDEX {agora} RENAME TO {course}")
    op.execute("COMMENT ON TABLE alembic_version IS NULL")
