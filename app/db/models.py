"""Tables. The schema itself is built only by the Alembic chain in `alembic/versions`;
these models must match its head (`alembic check` and the test suite verify that)."""

from datetime import datetime

from sqlalchemy import TIMESTAMP, BigInteger, Boolean, ForeignKey, Index, Integer, String, func, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base


class User(Base):
    __tablename__ = "users"
    # AUTOINCREMENT on SQLite: never hand a deleted user's id to a new account
    # (an old token would otherwise authenticate as the newcomer).
    __table_args__ = (
        # Emails are unique ignoring case; the address keeps the capitalisation it was registered with.
        Index("ix_users_lower_email", func.lower(text("email")), unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String)
    # The column keeps the course's name so course databases and tools still fit.
    password_hash: Mapped[str] = mapped_column("password", String)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), server_default=func.now())
    phone_number: Mapped[str | None] = mapped_column(String)
    # Tokens carry the generation they were issued at (claim `gen`); only tokens of the
    # current generation are accepted. A password change, "log out everywhere" and the
    # account's deletion move it on, which refuses every token issued before at once.
    token_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    posts: Mapped[list["Post"]] = relationship(back_populates="owner", passive_deletes=True)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        # The feed: newest first, id breaking ties; also serves keyset paging.
        Index("ix_posts_created_at_id", "created_at", "id"),
        # Foreign keys are not indexed by PostgreSQL: deleting a user needs this.
        Index("ix_posts_owner_id", "owner_id"),
        # One author's posts, newest first (`GET /posts/?owner_id=`), keyset paging included.
        Index("ix_posts_owner_id_created_at_id", "owner_id", "created_at", "id"),
        # Search on PostgreSQL: the titles holding every piece of the search, and a common
        # word's matches one time bucket at a time (app/db/grams.py; revision 8c3f1b6e2a90).
        # Fast update with a small pending list keeps a new post's entries cheap to add; every
        # search reads that list too, so autovacuum takes `posts` after every 1,000 new posts
        # (table storage parameters, which the model does not hold: revision e41b7c9d0a52).
        Index(
            "ix_posts_title_grams",
            "title_grams",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "on", "gin_pending_list_limit": 256},
            info={"only_on": "postgresql"},
        ),
        # Posts an older Agora wrote without them, for the next start to fill in:
        # on PostgreSQL, without `title_grams` (which covers those without `title_folded`);
        # on SQLite, which has no `title_grams`, without `title_folded`.
        Index(
            "ix_posts_title_ungrammed",
            "id",
            postgresql_where=text("title_grams IS NULL"),
            info={"only_on": "postgresql"},
        ),
        Index(
            "ix_posts_title_unfolded",
            "id",
            sqlite_where=text("title_folded IS NULL"),
            info={"only_on": "sqlite"},
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String)
    # `title` with full Unicode case folding (app/db/folding.py), what searches match.
    # NULL only for a post an older Agora wrote during a deploy, until it is folded.
    title_folded: Mapped[str | None] = mapped_column(String)
    # What PostgreSQL's search index holds of the title (app/db/grams.py): hashed pieces of
    # `title_folded` and the post's time buckets. PostgreSQL only; NULL as `title_folded` is.
    title_grams: Mapped[list[int] | None] = mapped_column(ARRAY(Integer), info={"only_on": "postgresql"})
    content: Mapped[str] = mapped_column(String)
    published: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), server_default=func.now())
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    owner: Mapped[User] = relationship(back_populates="posts")


class Vote(Base):
    __tablename__ = "votes"
    # The primary key (user_id, post_id) cannot count the votes of one post.
    __table_args__ = (Index("ix_votes_post_id", "post_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)


class RevokedToken(Base):
    """Tokens logged out one by one (`POST /logout`), until they would have expired anyway."""

    __tablename__ = "revoked_tokens"
    # Expired entries are deleted oldest first (app/domain/accounts.py).
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    # The token's `jti` claim: 22 URL-safe characters (16 random bytes).
    jti: Mapped[str] = mapped_column(String, primary_key=True)
    # The token's `exp` claim (Unix time): after it, the token is refused anyway and the row can go.
    expires_at: Mapped[int] = mapped_column(BigInteger)
