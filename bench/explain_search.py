"""EXPLAIN (ANALYZE, BUFFERS) of what Agora runs for one search of each class (issue 15).

    .venv/bin/python -m bench.explain_search --database-url postgresql://postgres@127.0.0.1:5440/agora_large
        [--summary-only]

For each class of bench/lua/search_classes.lua, one query as the endpoint gets it, and
the statements the endpoint then runs (app/domain/posts.py, `Feed.page`): first
RECENT_SEARCH (among the newest SEARCH_WINDOW posts) when skip + limit fits in that
window, unless PostgreSQL's statistics call the search too rare to fill a page there; then the
statements of `SearchPlan.whole_table` (GRAMS_SEARCH, or GRAMS_WALK and what follows it)
until one returns a page; for a deep page that could go down the feed, the look at the
newest posts that decides it (`Feed._newest_hold_a_page`). Each is shown where the app
runs it. The word memory (60 s of what the window held for a word) is left out: this is a
worker's first search of each word.

The statements run as the app runs them: prepared once on one connection (asyncpg keeps
each statement prepared per pooled connection), the parameters bound as `Feed.page` binds
them (the pattern is `like_pattern(fold(search))`), every statement executed a few times
with the other classes' values first, so PostgreSQL's choice between a generic and a
custom plan is the one a busy connection makes (a generic plan is reused without
planning; "planning" is then the lookup in the plan cache). Printed: a heading per
class, the query and pattern, per statement the plan kind, the rows, planning and
execution time and the full plan; then a summary table.
"""

import argparse
import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from app.config import driver_urls
from app.db import statements
from app.db.backends import Prepared
from app.db.folding import fold
from app.domain.posts import PROBE_PAGE, SearchPlan, gram_statistics, plan_search, with_bucket_posts

# Who reads: seeded user 1 with a token of its first generation, never logged out (as bench/explain.py).
VIEWER: dict[str, object] = {"viewer_id": 1, "viewer_generation": 0, "viewer_jti": "AAAAAAAAAAAAAAAAAAAAAA"}
# As the timeout the app puts on a search (app/config.py, SEARCH_TIMEOUT_MS): what runs longer is a 503.
SEARCH_TIMEOUT_MS = 500
# A 100-character paste of seed words (the long class): every word is common, the whole is in no title.
LONG_QUERY = (
    "python rust golang kotlin swift ruby haskell scala elixir erlang ocaml fastapi django flask postgres redis kafka"
)[:100]


@dataclass(frozen=True)
class Case:
    name: str  # the class, as bench/lua/search_classes.lua names it
    about: str
    search: str
    limit: int = 10
    skip: int = 0
    deep_cursor: bool = False  # before_id: a post about 100,000 posts deep in the feed


CASES = [
    Case("common", "one common word (about 6 % of the titles)", "python"),
    Case("fragment", "three letters, the start of a common word", "pyt"),
    Case("phrase", "two common words together: 444 of 1,000,000 titles", "amber basil"),
    Case("absent", "a misspelling: in no title", "pythn"),
    Case("absent", "in no title, but each piece common (yar: yarrow, arn: garnet)", "yarn"),
    Case("long", "100 characters of common words: in no title", LONG_QUERY),
    Case("special", "LIKE's metacharacters, taken literally: in no title", "50% off"),
    Case("special", "punctuation alone: in no title", "%"),
    Case("special", "a path: in no title", "c:\\"),
    Case("paged", "a common word, skip=400", "python", skip=400),
    Case("paged", "a common word, before_id ~100,000 posts deep", "python", deep_cursor=True),
    Case("paged", "a common word, limit=100", "python", limit=100),
]


@dataclass
class Step:
    label: str
    rows: int
    generic: bool
    planning_ms: float
    execution_ms: float
    scans: list[str]
    plan: list[str]


# Each statement's name as docs/statements.sql shows it ("GRAMS_WALK[False]").
NAMES = {id(prepared): name for name, prepared in statements.named_statements().items()}


class Session:
    """One connection with Agora's search statements prepared on it, as a pooled asyncpg connection has."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection
        self.names: dict[int, str] = {}

    def _name(self, prepared: Prepared) -> str:
        if id(prepared) not in self.names:
            name = f"agora_search_{len(self.names)}"
            # The app's own SQL, as it sends it (not user input).
            statement = sql.SQL(prepared.asyncpg_sql)
            self.connection.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + statement)
            self.names[id(prepared)] = name
        return self.names[id(prepared)]

    def _execute(self, prepared: Prepared, params: dict[str, object], explain: str = "") -> sql.Composed:
        values = sql.SQL(", ").join(sql.Literal(params[name]) for name in prepared.parameter_names)
        return sql.SQL(explain + "EXECUTE {}({})").format(sql.Identifier(self._name(prepared)), values)

    def rows(self, prepared: Prepared, params: dict[str, object]) -> int:
        return len(self.connection.execute(self._execute(prepared, params)).fetchall())

    def explain(self, label: str, prepared: Prepared, params: dict[str, object]) -> Step:
        rows = self.rows(prepared, params)
        before = self._generic_plans(prepared)
        query = self._execute(prepared, params, "EXPLAIN (ANALYZE, BUFFERS) ")
        plan = [str(row[0]) for row in self.connection.execute(query).fetchall()]
        generic = self._generic_plans(prepared) > before
        return Step(label, rows, generic, _ms(plan, "Planning Time"), _ms(plan, "Execution Time"), _scans(plan), plan)

    def _generic_plans(self, prepared: Prepared) -> int:
        found = self.connection.execute(
            "SELECT generic_plans FROM pg_prepared_statements WHERE name = %s", (self._name(prepared),)
        ).fetchone()
        return int(found[0]) if found else 0


def _ms(plan: list[str], what: str) -> float:
    for line in plan:
        if line.startswith(what + ":"):
            return float(line.split(":")[1].split()[0])
    return 0.0


# The scans of posts that make the plan, e.g. "Index Scan Backward using ix_posts_created_at_id on posts".
SCAN = re.compile(
    r"->\s+((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan|Seq Scan)[^(]*)"
)


def _scans(plan: list[str]) -> list[str]:
    found = []
    for line in plan:
        match = SCAN.search(line)
        if match is None:
            continue
        scan = match.group(1).strip()
        # The page's posts, not the cursor lookup nor the users' and votes' probes.
        if (scan.endswith(" on posts") or "ix_posts" in scan) and scan not in found:
            found.append(scan)
    return found


def _short(query: str) -> str:
    return query if len(query) <= 60 else query[:40] + "...'" + query[query.index("', ") + 1 :]


def steps_of(session: Session, case: Case, params: dict[str, object], plan: SearchPlan, explain: bool) -> list[Step]:
    """What Feed.page runs for this query, in order (explained, or just run to warm the connection)."""
    keyset = case.deep_cursor
    done: list[Step] = []
    rows = 0

    def run(label: str, prepared: Prepared, values: dict[str, object]) -> int:
        if explain:
            done.append(session.explain(f"{NAMES[id(prepared)]}: {label}", prepared, values))
            return done[-1].rows
        return session.rows(prepared, values)

    head_typical = False
    reach = case.skip + case.limit
    if reach <= statements.SEARCH_WINDOW and plan.window_may_fill(reach):
        rows = run(f"the newest {statements.SEARCH_WINDOW} posts", statements.RECENT_SEARCH[keyset], params)
    elif not keyset and plan.feed_walk_fits(reach):  # Feed._newest_hold_a_page
        probe = {**params, "skip": 0, "limit": PROBE_PAGE}
        label = f"do the newest {statements.SEARCH_WINDOW} posts hold a first page?"
        head_typical = run(label, statements.RECENT_SEARCH[False], probe) >= PROBE_PAGE
    if rows < case.limit:
        for prepared in plan.whole_table(keyset=keyset, reach=reach, head_typical=head_typical):
            values = {**params, "grams": plan.grams, "walk_grams": plan.walk_grams, "scan": plan.walk_scan(reach)}
            values |= {"quiet_sample": plan.quiet_sample, "second_rate": plan.second_rate(reach)}
            if run("the whole table", prepared, values) >= case.limit:
                break
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--summary-only", action="store_true", help="the summary table, without the plans")
    args = parser.parse_args()
    dsn = driver_urls(args.database_url)[0].set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        deep = connection.execute("SELECT id FROM posts ORDER BY id DESC OFFSET 100000 LIMIT 1").fetchone()
        posts = connection.execute("SELECT count(*) FROM posts").fetchone()
        connection.execute("SET jit = off")  # as on the app's own connections (app/db/backends.py)
        session = Session(connection)
        frequencies = connection.execute(statements.GRAM_FREQUENCIES.asyncpg_sql)
        columns = [column.name for column in frequencies.description or []]
        found = frequencies.fetchone()
        statistics = gram_statistics(dict(zip(columns, found, strict=True))) if found else None
        if statistics is not None:  # as the app's GramFrequencies reads them
            feed = connection.execute(statements.FEED_BUCKETS.asyncpg_sql)
            names = [column.name for column in feed.description or []]
            row = feed.fetchone()
            if row is not None:
                statistics = with_bucket_posts(statistics, dict(zip(names, row, strict=True)))
        bound = []
        for case in CASES:
            params: dict[str, object] = {
                **VIEWER,
                "limit": case.limit,
                "skip": case.skip,
                "pattern": statements.like_pattern(fold(case.search)),
            }
            if case.deep_cursor:
                params["before_id"] = max(1, deep[0] if deep else 1)
            bound.append((case, params, plan_search(fold(case.search), statistics)))
        # Warm the connection as a pooled one is: each statement run with every class's
        # values, more than five times (after five, PostgreSQL weighs a generic plan).
        for _ in range(3):
            for case, params, plan in bound:
                steps_of(session, case, params, plan, explain=False)
        summary = []
        print(f"# Searches by class on {posts[0] if posts else 0:,} posts\n")
        for case, params, plan in bound:
            extras = f", skip={case.skip}" if case.skip else ""
            extras += f", before_id={params['before_id']}" if case.deep_cursor else ""
            query = f"search={case.search!r}, limit={case.limit}{extras}"
            steps = steps_of(session, case, params, plan, explain=True)
            summary.append((case, query, steps))
            if args.summary_only:
                continue
            print(f"## {case.name}: {case.about}\n\n`{query}`, pattern `{params['pattern']}`\n")
            for number, step in enumerate(steps, 1):
                after = ""
                if step.label.startswith(("RECENT_SEARCH", "GRAMS_WALK")):
                    after = " (a full page: the app answers with it)" if step.rows >= case.limit else ""
                    after = after or " (less than the page: the app asks the whole table next)"
                print(
                    f"{number}. {step.label}: {step.rows} rows{after}; {'generic' if step.generic else 'custom'} "
                    f"plan, planning {step.planning_ms:.3f} ms, execution {step.execution_ms:.3f} ms"
                    + (f" (past SEARCH_TIMEOUT_MS, {SEARCH_TIMEOUT_MS} ms: a 503)" if step.execution_ms > 500 else "")
                )
                print("\n```\n" + "\n".join(step.plan) + "\n```\n")
        print("## Summary\n")
        print("| class | query | statement | plan | rows | planning ms | execution ms |")
        print("|---|---|---|---|---:|---:|---:|")
        for case, query, steps in summary:
            for step in steps:
                kind = "generic" if step.generic else "custom"
                scans = "; ".join(step.scans)
                print(
                    f"| {case.name} | `{_short(query)}` | {step.label.split(':')[0]} | {kind}: {scans} | {step.rows} "
                    f"| {step.planning_ms:.3f} | {step.execution_ms:.3f} |"
                )


if __name__ == "__main__":
    main()
