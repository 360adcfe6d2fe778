"""Time `alembic upgrade head` on empty databases, as a developer runs it (a new process).

    .venv/bin/python bench/time_migrations.py [--postgresql postgresql://user@host:port/postgres] [--repeat 3]

SQLite: a new file each time. PostgreSQL: a new database each time, created and
dropped through the given server (any database on it to connect to).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent


def upgrade_seconds(database_url: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def on_sqlite() -> float:
    with tempfile.TemporaryDirectory() as directory:
        return upgrade_seconds(f"sqlite:///{directory}/agora.db")


def on_postgresql(server_url: str) -> float:
    admin = make_url(server_url).set(drivername="postgresql")
    name = f"agora_migration_timing_{uuid.uuid4().hex[:8]}"
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        return upgrade_seconds(admin.set(database=name).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql", help="a PostgreSQL server to create scratch databases on")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = {"SQLite": [on_sqlite() for _ in range(args.repeat)]}
    if args.postgresql:
        runs["PostgreSQL"] = [on_postgresql(args.postgresql) for _ in range(args.repeat)]
    for database, seconds in runs.items():
        print(
            f"alembic upgrade head, empty {database}: median {statistics.median(seconds):.2f} s "
            f"(runs: {', '.join(f'{s:.2f}' for s in seconds)}; target < 2 s)"
        )


if __name__ == "__main__":
    main()
