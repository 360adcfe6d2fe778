"""Tables. The schema itself is built only by the Alembic chain in `alembic/versions`;
these models must match its head (`alembic check` and the test suite verify that)."""

from datetime import datetime

from sqlalchemy import TIMESTAMP, BigInteger, Boolean, ForeignKey, Index, Integer, String, func, text, true
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
        # Search: a substring of the folded title (LIKE '%...%', app/db/folding.py) is
        # found through its trigrams; PostgreSQL only, SQLite scans (see `include_object`
        # in app/db/migrations.py).
        Index(
            "ix_posts_title_folded_trgm",
            "title_folded",
            postgresql_using="gin",
            postgresql_ops={"title_folded": "gin_trgm_ops"},
            info={"only_on": "postgresql"},
        ),
        # Search for punctuation (`%`, `c:\\`), which trigrams leave out: the titles holding
        # every such character of the search; PostgreSQL only (revision 5c1e9a7d2b44).
        Index(
            "ix_posts_title_symbols",
            func.agora_title_symbols(text("title_folded")),
            postgresql_using="gin",
            info={"only_on": "postgresql"},
        ),
        # Posts an older Agora wrote without `title_folded`, for the next start to fold.
        Index(
            "ix_posts_title_unfolded",
            "id",
            postgresql_where=text("title_folded IS NULL"),
            sqlite_where=text("title_folded IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String)
    # `title` with full Unicode case folding (app/db/folding.py), what searches match.
    # NULL only for a post an older Agora wrote during a deploy, until it is folded.
    title_folded: Mapped[str | None] = mapped_column(String)
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
