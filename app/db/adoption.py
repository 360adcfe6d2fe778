"""Adopting a database built by the course app, and the way back to it.

The course app's own Alembic chain (seven revisions, head `c47ecbf163d4` "add phone
number") leaves on PostgreSQL the schema Agora's chain has at `936002196a31` (also
"add phone number"), except for the names of the constraints: the course lets
PostgreSQL name them (`posts_pkey`, `users_email_key`, ...), Agora names them by the
convention of app/db/base.py (`pk_posts`, `uq_users_email`, ...).

- env.py calls `check_database` before Alembic reads the version. A database at
  `c47ecbf163d4` whose schema is exactly the course's is read as Agora's `936002196a31`
  (alembic_version is rewritten in the transaction of the first revision that runs);
  `208054a49a86` indexes its feed, then `097be2068e8f` "adopt a course app database"
  gives its constraints Agora's names. Anything else Agora does not know is refused with a
  message saying what was found, and nothing is changed.
- The way back: `alembic downgrade 936002196a31` on an adopted database gives the
  constraints their course names again and leaves alembic_version at `c47ecbf163d4`,
  where the course app's own Alembic continues. Agora takes such a database no lower.

Course databases are PostgreSQL only (the course's revisions do not run on SQLite).
"""

import logging
from collections.abc import Iterable
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, text

# What the course app's chain is made of, oldest first.
COURSE_REVISIONS = (
    ("cfcc4fd02d18", "create posts table"),
    ("01b2584928a5", "add content column"),
    ("8c82b1632f52", "add user table"),
    ("af786b740296", "add foreign-key to posts table"),
    ("036d0a4565b7", "add last few columns"),
    ("036aa392dfb0", "auto-vote"),
    ("c47ecbf163d4", "add phone number"),
)
COURSE_HEAD = "c47ecbf163d4"
# Agora's revision with the course head's schema, and the one that renames its constraints
# (after 208054a49a86, which indexes the feed).
ADOPTION_POINT = "936002196a31"
ADOPT_REVISION = "097be2068e8f"

# (table, the course's name, Agora's name, kind): p primary key, u unique, f foreign key.
CONSTRAINT_NAMES = (
    ("posts", "posts_pkey", "pk_posts", "p"),
    ("users", "users_pkey", "pk_users", "p"),
    ("users", "users_email_key", "uq_users_email", "u"),
    ("votes", "votes_pkey", "pk_votes", "p"),
    ("posts", "post_users_fk", "fk_posts_owner_id_users", "f"),
    ("votes", "votes_user_id_fkey", "fk_votes_user_id_users", "f"),
    ("votes", "votes_post_id_fkey", "fk_votes_post_id_posts", "f"),
)

# The comment on alembic_version that marks a database adopted from the course app
# (the adopt revision writes it, and its downgrade clears it).
ADOPTED_MARKER = f"agora: adopted from the course app at {COURSE_HEAD}"

# The course head's schema (PostgreSQL's own spelling, as pg_catalog reports it).
# Column: (type, NOT NULL, default); `nextval` stands for a serial column's sequence.
COURSE_COLUMNS: dict[str, dict[str, tuple[str, bool, str | None]]] = {
    "posts": {
        "id": ("integer", True, "nextval"),
        "title": ("character varying", True, None),
        "content": ("character varying", True, None),
        "owner_id": ("integer", True, None),
        "published": ("boolean", True, "true"),
        "created_at": ("timestamp with time zone", True, "now()"),
    },
    "users": {
        "id": ("integer", True, "nextval"),
        "email": ("character varying", True, None),
        "password": ("character varying", True, None),
        "created_at": ("timestamp with time zone", True, "now()"),
        "phone_number": ("character varying", False, None),
    },
    "votes": {
        "user_id": ("integer", True, None),
        "post_id": ("integer", True, None),
    },
}
COURSE_CONSTRAINTS: dict[str, tuple[str, str]] = {
    "posts_pkey": ("posts", "PRIMARY KEY (id)"),
    "post_users_fk": ("posts", "FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE CASCADE"),
    "users_pkey": ("users", "PRIMARY KEY (id)"),
    "users_email_key": ("users", "UNIQUE (email)"),
    "votes_pkey": ("votes", "PRIMARY KEY (user_id, post_id)"),
    "votes_user_id_fkey": ("votes", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"),
    "votes_post_id_fkey": ("votes", "FOREIGN KEY (post_id) REFERENCES posts(id) ON DELETE CASCADE"),
}
TABLES = tuple(COURSE_COLUMNS)

# Under "alembic" so that the CLI's logging configuration (alembic.ini) shows it.
log = logging.getLogger("alembic.agora.adoption")


def check_database(connection: Connection, known_revisions: Iterable[str], *, mutate: bool) -> None:
    """Refuse a database Agora does not know; read a course app database as Agora's.

    Runs inside the caller's transaction: the rewrite of alembic_version for a course
    database is committed with the first revision that runs (`mutate`), or rolled back
    by the caller (commands that only read, such as `alembic current`).
    """
    known = set(known_revisions)
    has_version_table = "alembic_version" in user_tables(connection)
    versions = (
        [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
        if has_version_table
        else []
    )
    if not versions:
        tables = sorted(user_tables(connection) - {"alembic_version"})
        if tables:
            where = "an empty alembic_version table" if has_version_table else "no alembic_version table"
            raise CommandError(
                f"This database has tables ({', '.join(tables)}) and {where}: it was built neither by "
                "Agora's migrations nor by the course app's, so Agora changes nothing in it. Point "
                "DATABASE_URL at an empty database, or at one Agora or the course app built."
            )
        return
    course = dict(COURSE_REVISIONS)
    for version in versions:
        if version in known:
            continue
        if version == COURSE_HEAD:
            adopt_course_head(connection, mutate=mutate)
        elif version in course:
            raise CommandError(
                f"This is a course app database at its revision {version} ({course[version]!r}), not at the "
                f"course's last revision {COURSE_HEAD} ({course[COURSE_HEAD]!r}). Bring it to {COURSE_HEAD} "
                "with the course app first (its own `alembic upgrade head`), then run Agora's upgrade again. "
                "Nothing was changed."
            )
        else:
            raise CommandError(
                f"This database is at revision {version}, which neither Agora's migration chain nor the "
                f"course app's knows (alembic_version holds {', '.join(versions)}). It was built by other "
                "migrations, or by a newer Agora than this one. Nothing was changed."
            )


def adopt_course_head(connection: Connection, *, mutate: bool) -> None:
    if connection.dialect.name != "postgresql":
        raise CommandError(
            f"alembic_version says the course app's {COURSE_HEAD}, but course app databases are PostgreSQL "
            "databases: Agora adopts them there only. Nothing was changed."
        )
    differences = course_schema_differences(connection)
    if differences:
        listed = "".join(f"\n  - {difference}" for difference in differences)
        raise CommandError(
            f"alembic_version says the course app's {COURSE_HEAD} ('add phone number'), but the schema is "
            f"not the one the course app builds:{listed}\nAgora adopts only the course's own schema, and "
            "changed nothing. Make the schema match (or restore the course app's), then run it again."
        )
    connection.execute(
        text("UPDATE alembic_version SET version_num = :agora WHERE version_num = :course"),
        {"agora": ADOPTION_POINT, "course": COURSE_HEAD},
    )
    if mutate:
        log.info(
            "Adopting a course app database: its revision %s is Agora's %s (same schema); "
            "revision %s gives its constraints Agora's names",
            COURSE_HEAD,
            ADOPTION_POINT,
            ADOPT_REVISION,
        )
    else:
        log.info(
            "A course app database at %s: read as Agora's %s, which has the same schema "
            "(`alembic upgrade head` adopts it)",
            COURSE_HEAD,
            ADOPTION_POINT,
        )


def user_tables(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    else:
        query = (
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
        )
    return {row[0] for row in connection.execute(text(query))}


def course_schema_differences(connection: Connection) -> list[str]:
    """How the schema differs from the course head's, one line each (empty: it is the course's)."""
    differences: list[str] = []
    tables = user_tables(connection) - {"alembic_version"}
    for table in sorted(set(TABLES) - tables):
        differences.append(f"table {table} is missing")
    for table in sorted(tables - set(TABLES)):
        differences.append(f"table {table} is not part of the course's schema")

    found_columns: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
    rows = connection.execute(
        text(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') "
            "AND c.relname IN ('posts', 'users', 'votes') AND a.attnum > 0 AND NOT a.attisdropped"
        )
    )
    for table, column, type_, not_null, default in rows:
        found_columns.setdefault(table, {})[column] = (type_, not_null, default)
    for table in TABLES:
        if table not in tables:
            continue
        expected, found = COURSE_COLUMNS[table], found_columns.get(table, {})
        for column in expected:
            if column not in found:
                differences.append(f"column {table}.{column} is missing")
            elif not _same_column(expected[column], found[column]):
                differences.append(
                    f"column {table}.{column} is {_describe(found[column])}, the course's is "
                    f"{_describe(expected[column])}"
                )
        for column in sorted(set(found) - set(expected)):
            differences.append(f"column {table}.{column} ({_describe(found[column])}) is not the course's")

    constraints = {
        name: (table, definition)
        for table, name, definition in connection.execute(
            text(
                "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
                "JOIN pg_class c ON c.oid = con.conrelid WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relname IN ('posts', 'users', 'votes')"
            )
        )
    }
    for name, (table, definition) in COURSE_CONSTRAINTS.items():
        if table not in tables:
            continue
        if name not in constraints:
            differences.append(f"constraint {name} on {table} ({definition}) is missing")
        elif constraints[name] != (table, definition):
            found_table, found_definition = constraints[name]
            differences.append(
                f"constraint {name} is {found_definition} on {found_table}, the course's is {definition} on {table}"
            )
    for name in sorted(set(constraints) - set(COURSE_CONSTRAINTS)):
        table, definition = constraints[name]
        differences.append(f"constraint {name} on {table} ({definition}) is not the course's")

    for table, name, definition in connection.execute(
        text(
            "SELECT t.relname, i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relnamespace = current_schema()::regnamespace AND t.relname IN ('posts', 'users', 'votes') "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid) ORDER BY 2"
        )
    ):
        differences.append(
            f"index {name} on {table} is not the course's ({definition}); Agora builds the indexes it needs: "
            f"drop it (DROP INDEX CONCURRENTLY {name})"
        )
    return differences


def _same_column(expected: tuple[str, bool, str | None], found: tuple[str, bool, str | None]) -> bool:
    (type_, not_null, default), (found_type, found_not_null, found_default) = expected, found
    if default == "nextval":
        default_matches = found_default is not None and found_default.startswith("nextval(")
    else:
        default_matches = default == found_default
    return type_ == found_type and not_null == found_not_null and default_matches


def _describe(column: tuple[str, bool, str | None]) -> str:
    type_, not_null, default = column
    default = "a serial sequence" if default == "nextval" else default
    return f"{type_} {'NOT NULL' if not_null else 'NULL'}" + (f" DEFAULT {default}" if default else "")


def course_named(connection: Connection) -> list[str]:
    """The course's constraint names this database carries (PostgreSQL)."""
    found = _constraint_names(connection)
    return [course for _, course, _, _ in CONSTRAINT_NAMES if course in found]


def agora_named(connection: Connection) -> list[str]:
    """Agora's names, of those the course's constraints are renamed to, that this database carries."""
    found = _constraint_names(connection)
    return [agora for _, _, agora, _ in CONSTRAINT_NAMES if agora in found]


def _constraint_names(connection: Connection) -> set[str]:
    return {
        row[0]
        for row in connection.execute(
            text(
                "SELECT con.conname FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('posts', 'users', 'votes')"
            )
        )
    }


def is_adopted(connection: Connection) -> bool:
    """True when the adopt revision marked this database as coming from the course app."""
    comment = connection.execute(
        text("SELECT obj_description(to_regclass('alembic_version'), 'pg_class')")
    ).scalar_one_or_none()
    return comment == ADOPTED_MARKER


def from_the_course(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql" and (is_adopted(connection) or bool(course_named(connection)))


def check_steps(planned: list[Any], connection: Connection) -> None:
    """No downgrade takes a course database below the course's point (before any step runs)."""
    below = any(
        not getattr(step, "is_upgrade", True)
        and getattr(getattr(step, "revision", None), "revision", None) == ADOPTION_POINT
        for step in planned
    )
    if below and from_the_course(connection):
        raise CommandError(
            f"This database came from the course app: Agora takes it back no lower than the course's own "
            f"last revision, {COURSE_HEAD} (`alembic downgrade {ADOPTION_POINT}` ends there, with the "
            "course's constraint names). Below that, use the course app's own Alembic. Nothing was changed."
        )


def hand_back_to_the_course(*, ctx: Any, step: Any, heads: set[str], **_: Any) -> None:
    """`on_version_apply` hook: a downgrade that lands at 936002196a31 on a database with the
    course's names leaves alembic_version at the course's head, in the same transaction."""
    if step.is_stamp or step.is_upgrade or set(heads) != {ADOPTION_POINT}:
        return
    connection = ctx.connection
    if connection is None or connection.dialect.name != "postgresql" or not course_named(connection):
        return
    connection.execute(
        text("UPDATE alembic_version SET version_num = :course WHERE version_num = :agora"),
        {"course": COURSE_HEAD, "agora": ADOPTION_POINT},
    )
    log.info(
        "Handed back to the course app: alembic_version is %s, the course's own last revision; "
        "the course app's Alembic takes it from here",
        COURSE_HEAD,
    )
