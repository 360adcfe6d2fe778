"""`python -m app`: upgrade the database to head, then serve the API.

Development: `python -m app` (127.0.0.1:8000, one process).
Production: run `alembic upgrade head` once as its own step, then
`python -m app --no-migrate --host 0.0.0.0 --workers 2` (uvicorn directly works too, without
the one-write responses of app/http/serving.py and the even share of app/http/balance.py).
"""

import argparse
import atexit
import os
import shutil
from typing import Any

import uvicorn

from app.config import settings_or_exit
from app.db.migrations import upgrade_to_head
from app.http.balance import run_workers
from app.http.logs import configure_logging
from app.http.metrics import prepare_multiprocess
from app.http.serving import UVICORN_OPTIONS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (production: one per core)")
    parser.add_argument("--no-migrate", action="store_true", help="do not upgrade the database first")
    parser.add_argument("--no-access-log", action="store_true", help="same as ACCESS_LOG_ENABLED=false")
    args = parser.parse_args()
    if args.no_access_log:
        os.environ["ACCESS_LOG_ENABLED"] = "false"  # read by the workers' Settings
    # Checked here, once: a refused configuration is one line and exit status 1, not a
    # traceback from every worker.
    settings_or_exit()
    configure_logging()  # for the migration step; each worker configures its own
    if not args.no_migrate:
        upgrade_to_head()
    # Several workers add up their metrics through files in one directory, emptied now.
    metrics_directory = prepare_multiprocess(args.workers)
    if metrics_directory is not None:
        atexit.register(shutil.rmtree, metrics_directory, ignore_errors=True)
    print(f"Agora: http://{args.host}:{args.port}  (docs at /docs)", flush=True)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "access_log": False,  # the app writes its own structured access log (app/http/middleware.py)
        "proxy_headers": True,
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        **UVICORN_OPTIONS,
    }
    if args.workers <= 1:
        uvicorn.run("app.main:app", **options)
        return
    # Several workers share out the connections evenly (app/http/balance.py).
    run_workers(uvicorn.Config("app.main:app", **options))


if __name__ == "__main__":
    main()
