"""Search by the class of query (issue 15): every class and the mix, as seeded, then after a burst.

    .venv/bin/python -m bench.search_classes --users 10000 --posts 1000000 [--duration 10] [--rounds 3]
        --database-url postgresql://.../agora_large --database-url postgresql://.../limit_large
        [--burst 20000] [--matching WORD] [--keep-burst] [--out DIR]
        limit=http://127.0.0.1:8201 agora=http://127.0.0.1:8000 [LABEL=URL ...]

`bash bench/run.sh --search-classes` runs this after its standard scenarios. Two passes of
bench/driver.py over the scenarios search_common ... search_paged and search_mix (the
classes and their weights are in bench/lua/search_classes.lua; bench/README.md, "Search by
the class of query", says why), against the same servers:
1. as the databases are (`OUT/seeded/`);
2. after `--burst` new posts written into every `--database-url` (bench/burst.py: the
   newest posts of the feed, matching none of the seed's words, or all holding
   `--matching WORD`), the servers left running as they are (`OUT/after-burst/`).
The burst is removed at the end (bench/burst.py --remove) unless `--keep-burst`: a
database reused with `--no-seed` is then as before. Printed, and written to
OUT/search-classes.md and .json: per class and target, req/s, p50, p99 and unexpected
answers of both passes side by side (a 503 is a search stopped by SEARCH_TIMEOUT_MS).
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The sibling modules by their own names, as mypy sees bench/ (a directory of scripts, no package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import burst
from driver import SEARCH_CLASSES

BENCH = Path(__file__).resolve().parent
PASSES = [("seeded", "as seeded"), ("after-burst", "after the burst")]


def weights() -> dict[str, int]:
    """The mix's weights by class, read from the wrk scripts (one source of truth)."""
    lua = (BENCH / "lua" / "search_classes.lua").read_text()
    return {name: int(weight) for name, weight in re.findall(r'\{"(\w+)", (\d+)\}', lua)}


def say(message: str) -> None:
    print(f"[search-classes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def drive(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """One pass of the driver over the search classes; its summary rows."""
    command = [sys.executable, str(BENCH / "driver.py"), "--users", str(args.users), "--posts", str(args.posts)]
    command += ["--duration", str(args.duration), "--rounds", str(args.rounds), "--out", str(out)]
    command += ["--scenarios", ",".join(args.classes), *args.targets]
    command += [option for url in args.database_url for option in ("--database-url", url)]
    subprocess.run(command, check=True)
    summary: list[dict[str, Any]] = json.loads((out / "results.json").read_text())["summary"]
    return summary


def report(passes: dict[str, list[dict[str, Any]]], classes: list[str], header: str) -> str:
    weight = weights()
    lines = [
        header,
        "",
        "| class (weight %) | target | req/s | p50 ms | p99 ms | non-2xx "
        "| req/s after | p50 ms after | p99 ms after | non-2xx after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seeded = {(row["scenario"], row["target"]): row for row in passes.get("seeded", [])}
    after = {(row["scenario"], row["target"]): row for row in passes.get("after-burst", [])}
    targets = list(dict.fromkeys(row["target"] for row in passes.get("seeded", [])))
    for scenario in classes:
        name = scenario.removeprefix("search_")
        label = f"{name} ({weight[name]})" if name in weight else f"{name} (all)"
        for target in targets:
            cells = []
            for rows in (seeded, after):
                row = rows.get((scenario, target))
                if row is None:
                    cells += ["-"] * 4
                    continue
                errors = row["unexpected"] + row["socket_errors"]
                cells += [f"{row['rps']:,.0f}", f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}", str(errors)]
            lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", metavar="LABEL=URL", help="as bench/driver.py takes them")
    parser.add_argument("--database-url", action="append", default=[], help="each server's database (repeat it)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", default=",".join(SEARCH_CLASSES), help="the driver's search_* scenarios")
    parser.add_argument("--burst", type=int, default=20_000, help="new posts between the passes (0: one pass)")
    parser.add_argument("--matching", metavar="WORD", help="the burst's titles all hold WORD (default: no seed word)")
    parser.add_argument("--keep-burst", action="store_true", help="leave the burst's posts in the databases")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    args.classes = [name for name in args.classes.split(",") if name]
    if unknown := set(args.classes) - set(SEARCH_CLASSES):
        parser.error(f"unknown classes: {', '.join(sorted(unknown))} (known: {', '.join(SEARCH_CLASSES)})")
    if args.burst and not args.database_url:
        parser.error("a burst needs --database-url for every server's database (or --burst 0)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    passes: dict[str, list[dict[str, Any]]] = {}
    say("pass 1/2: as seeded" if args.burst else "one pass: as the databases are")
    passes["seeded"] = drive(args, out / "seeded")
    burst_text = ""
    if args.burst:
        what = f"all holding {args.matching!r}" if args.matching else "matching none of the seed's words"
        burst_text = f"{args.burst:,} new posts {what}"
        say(f"the burst: {burst_text}, into {len(args.database_url)} databases")
        try:
            burst.insert(args.database_url, args.burst, args.matching)
            say("pass 2/2: after the burst")
            passes["after-burst"] = drive(args, out / "after-burst")
        finally:
            if not args.keep_burst:
                burst.remove(args.database_url)

    header = (
        f"Search by the class of query: {args.rounds} rounds x {args.duration}s per class and target, "
        f"interleaved (bench/driver.py); {args.users} users, {args.posts} posts; {started} to "
        f"{time.strftime('%H:%M:%S')}. Left: as seeded; right ('after'): after {burst_text or 'no burst'}. "
        "Weights: the share of each class in the mix (bench/lua/search_classes.lua). non-2xx: unexpected "
        "answers and socket errors (a 503 is a search stopped by SEARCH_TIMEOUT_MS)."
    )
    text = report(passes, args.classes, header)
    (out / "search-classes.md").write_text(text)
    saved = {"started": started, "burst": burst_text, "passes": passes}
    (out / "search-classes.json").write_text(json.dumps(saved, indent=1) + "\n")
    print(text)
    print(f"results: {out / 'search-classes.md'}")


if __name__ == "__main__":
    main()
