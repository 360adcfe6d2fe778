"""The declarative base, with a naming convention, and the range of the schema's integer columns."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Every constraint and index gets a predictable name, so a revision can drop it on
# SQLite too (where unnamed constraints cannot be addressed).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The largest value of an INTEGER column: every id in the schema (as in the course's
# schema). PostgreSQL refuses a larger parameter for such a column with an error;
# `Database.fetch` answers "no such row" instead (see app/db/backends.py).
INT32_MAX = 2**31 - 1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# How long a SQLite connection waits for another one's write lock before it fails.
SQLITE_BUSY_TIMEOUT_SECONDS = 15
