"""index the feed and votes per post

Revision ID: 208054a49a86
Revises: 936002196a31
Create Date: 2026-12-04 06:14:00.000000

How it was made: hand-written: the three btree indexes autogenerate found for
d3a3882d73c8, moved ahead of the revisions that need a table's exclusive lock.
What it does: indexes what the API reads most; no rows change.
- `votes (post_id)`: counting one post's votes (the key starts with user_id);
- `posts (created_at, id)`: the feed's order, and keyset paging (`before_id`);
- `posts (owner_id)`: deleting a user finds its posts without a scan.
Why here: without them the feed takes seconds on a large database (a course app
database has none of them, nor had Agora's before this revision), and a read that long
keeps off the instant's exclusive lock the next revisions need (renaming a course
database's foreign keys, dropping the case-sensitive unique constraint), while writes
queue behind the lock request. So they come first, built CONCURRENTLY on PostgreSQL
(reads and writes go on; an index an interrupted build left INVALID is built again, a
valid one is kept). d3a3882d73c8 builds them only where they are missing: databases
that were past this point when this revision was added got them from it.
Downgrade drops them (concurrently on PostgreSQL).
"""

from collections.abc import Sequence

from alembic import op

from app.db.migrations import ConcurrentIndex, build_indexes_concurrently, drop_indexes_concurrently

revision: str = "208054a49a86"
down_revision: str | None = "936002196a31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In the order that makes the feed fast soonest: counting a post's votes, then its order.
INDEXES = (
    ConcurrentIndex("ix_votes_post_id", "votes", "post_id"),
    ConcurrentIndex("ix_posts_created_at_id", "posts", "created_at, id"),
    ConcurrentIndex("ix_posts_owner_id", "posts", "owner_id"),
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        build_indexes_concurrently(*INDEXES)
        return
    with op.batch_alter_table("votes") as batch_op:
        batch_op.create_index("ix_votes_post_id", ["post_id"], unique=False)
    with op.batch_alter_table("posts") as batch_op:
        batch_op.create_index("ix_posts_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_posts_owner_id", ["owner_id"], unique=False)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        drop_indexes_concurrently(*(index.name for index in reversed(INDEXES)))
        return
    with op.batch_alter_table("posts") as batch_op:
        batch_op.drop_index("ix_posts_owner_id")
        batch_op.drop_index("ix_posts_created_at_id")
    with op.batch_alter_table("votes") as batch_op:
        batch_op.drop_index("ix_votes_post_id")
