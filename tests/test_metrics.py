"""GET /metrics: what is counted, in which format, who may read it, and the sums over several workers.

Every app a test process builds records into the same metrics (they are the process's),
so tests compare a scrape before and after what they do.
"""

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import IS_POSTGRESQL, TEST_DATABASE_URL, Account
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app.config import REPO_ROOT, Settings
from app.http import metrics
from app.main import create_app

Families = dict[str, list[Sample]]
REQUESTS = "agora_http_request_duration_seconds"
OUTSIDER = "203.0.113.9"  # TEST-NET-3: no network of the default allow-list


def parse(text: str) -> Families:
    """Samples by family name (text_string_to_metric_families raises on anything that is not the text format)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: Families, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels; 0 when there is none yet."""
    family = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_total")
    for sample in families.get(family, []):
        if sample.name == name and sample.labels == labels:
            return sample.value
    return 0.0


def requests(families: Families, method: str, route: str, status: int) -> float:
    return value(families, f"{REQUESTS}_count", method=method, route=route, status=str(status))


def scrape(http: httpx.Client | TestClient) -> Families:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


@pytest.fixture
def make_app(client: TestClient) -> Iterator[Callable[..., TestClient]]:
    """Apps with other settings on the test database, seen from `address` (the session's client is "testclient")."""
    opened: list[TestClient] = []

    def make(address: str = "127.0.0.1", **overrides: Any) -> TestClient:
        settings = Settings(DATABASE_URL=TEST_DATABASE_URL, **overrides)
        other = TestClient(create_app(settings), client=(address, 40000))
        other.__enter__()
        opened.append(other)
        return other

    yield make
    for other in opened:
        other.__exit__(None, None, None)


# --- what is counted ------------------------------------------------------------------------


def test_requests_are_counted_by_method_route_template_and_status(
    live_server: str, make_account: Callable[..., Account]
) -> None:
    author = make_account()
    with httpx.Client(base_url=live_server, headers=author.headers, timeout=10) as http:
        post_id = http.post("/posts/", json={"title": "t", "content": "c"}).json()["id"]
        before = scrape(http)
        calls = [("GET", f"/posts/{post_id}")] * 3 + [("GET", "/posts/999999")] * 2 + [("GET", "/health")] * 4
        calls += [("GET", "/no/such/path/1"), ("GET", "/no/such/path/2"), ("PUT", "/health"), ("HEAD", "/health")]
        calls += [("DELETE", f"/posts/{post_id}"), ("GET", "/posts")]
        statuses = [http.request(method, path).status_code for method, path in calls]
        after = scrape(http)
    assert statuses == [200] * 3 + [404] * 2 + [200] * 4 + [404, 404, 405, 200, 204, 200]

    expected = {
        ("GET", "/posts/{post_id}", 200): 3,
        ("GET", "/posts/{post_id}", 404): 2,
        ("GET", "/health", 200): 4,
        ("GET", "unmatched", 404): 2,  # one label for every path no route knows
        ("PUT", "/health", 405): 1,  # the 405 of the path's fallback, under the path's template
        ("HEAD", "/health", 200): 1,  # HEAD runs as GET inside; the label keeps what the client sent
        ("DELETE", "/posts/{post_id}", 204): 1,
        ("GET", "/posts", 200): 1,  # both forms of a path are routes of their own (app/api/routing.py)
    }
    deltas = {key: requests(after, *key) - requests(before, *key) for key in expected}
    assert deltas == expected
    routes = {sample.labels["route"] for sample in after[REQUESTS] if "route" in sample.labels}
    assert {"/posts/{post_id}", "unmatched", "/metrics"} <= routes
    assert not [route for route in routes if route != "unmatched" and not route.startswith("/")]
    assert not [route for route in routes if str(post_id) in route or "999999" in route or "such" in route]


def test_routes_outside_the_api_are_labelled_by_their_template_too(make_app: Callable[..., TestClient]) -> None:
    http = make_app()
    before = scrape(http)
    calls = [
        ("GET", "/docs/static/swagger-ui.css", 200),  # a mount: its path template
        ("GET", "/docs/static/no-such-file.js", 404),
        ("GET", "/openapi.json", 200),
        ("HEAD", "/docs", 200),
        ("DELETE", "/users/5", 405),
        ("FOO", "/health", 405),  # a method outside HTTP's usual ones
    ]
    assert [http.request(method, path).status_code for method, path, _ in calls] == [s for _, _, s in calls]
    after = scrape(http)
    expected = {
        ("GET", "/docs/static/{path}", 200): 1,
        ("GET", "/docs/static/{path}", 404): 1,
        ("GET", "/openapi.json", 200): 1,
        ("HEAD", "/docs", 200): 1,
        ("DELETE", "/users/{user_id}", 405): 1,
        ("other", "/health", 405): 1,
    }
    assert {key: requests(after, *key) - requests(before, *key) for key in expected} == expected


def test_the_histogram_has_the_buckets_for_requests_of_1_to_50_ms(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        for _ in range(5):
            assert http.get("/health").status_code == 200
        families = scrape(http)
    labels = {"method": "GET", "route": "/health", "status": "200"}
    buckets = [s for s in families[REQUESTS] if s.name == f"{REQUESTS}_bucket" and s.labels.items() > labels.items()]
    bounds = [sample.labels["le"] for sample in buckets]
    assert bounds == [*(str(bound) for bound in metrics.REQUEST_BUCKETS), "+Inf"]
    counts = [sample.value for sample in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == value(families, f"{REQUESTS}_count", **labels) >= 5
    assert 0 < value(families, f"{REQUESTS}_sum", **labels) < counts[-1]  # seconds: each well under one
    assert counts[bounds.index("0.05")] > 0  # /health takes well under 50 ms


def test_the_scrape_is_prometheus_text_format_with_every_family(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        response = http.get("/metrics")
        head = http.head("/metrics/")
    assert response.status_code == 200
    assert head.status_code == 200 and head.content == b""
    assert response.headers["content-type"] == metrics.CONTENT_TYPE
    assert response.headers["cache-control"] == "no-store"
    types = {family.name: family.type for family in text_string_to_metric_families(response.text)}
    assert {
        REQUESTS: "histogram",
        "agora_rate_limit_refusals": "counter",
        "agora_rate_limit_storage_failures": "counter",
        "agora_replica_fallbacks": "counter",
        "agora_database_pool_wait_seconds": "histogram",
        "agora_database_pool_connections": "gauge",
        "agora_database_pool_max_connections": "gauge",
        "agora_worker_processes": "gauge",
    }.items() <= types.items()
    assert "process_resident_memory_bytes" in types  # one process: its own figures are the server's


def test_what_other_modules_report_shows_up(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        before = scrape(http)
        metrics.rate_limit_refused("failed_logins_per_address")
        metrics.rate_limit_refused("failed_logins_per_address")
        metrics.rate_limit_refused("registrations_per_address")
        metrics.rate_limit_storage_failed()
        metrics.replica_fallback("lagging")
        metrics.database_pool_wait("replica-9", 0.003)
        metrics.database_pool_wait("replica-9", 0.3)
        metrics.database_pool_wait("replica-9", 0.0025)  # on a bound: in its bucket (le means <=)
        metrics.database_pool_size("replica-9", 3, 1, 4)
        after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("agora_rate_limit_refusals_total", limit="failed_logins_per_address") == 2
    assert delta("agora_rate_limit_refusals_total", limit="registrations_per_address") == 1
    assert delta("agora_rate_limit_storage_failures_total") == 1
    assert delta("agora_replica_fallbacks_total", reason="lagging") == 1
    wait = "agora_database_pool_wait_seconds"
    assert delta(f"{wait}_count", database="replica-9") == 3
    assert delta(f"{wait}_sum", database="replica-9") == pytest.approx(0.3055)
    assert delta(f"{wait}_bucket", database="replica-9", le="0.001") == 0
    assert delta(f"{wait}_bucket", database="replica-9", le="0.0025") == 1
    assert delta(f"{wait}_bucket", database="replica-9", le="0.005") == 2
    assert delta(f"{wait}_bucket", database="replica-9", le="0.5") == 3
    assert value(after, "agora_database_pool_connections", database="replica-9", state="in_use") == 3
    assert value(after, "agora_database_pool_connections", database="replica-9", state="idle") == 1
    assert value(after, "agora_database_pool_max_connections", database="replica-9") == 4


def test_each_scrape_samples_the_pools_of_the_running_apps() -> None:
    pools = {"in_use": 0}

    def report() -> None:
        pools["in_use"] += 1
        metrics.database_pool_size("sampled", pools["in_use"], 0, 8)

    async def scrape_twice() -> list[float]:
        seen = []
        async with metrics.worker_metrics(report):
            for _ in range(2):
                metrics.sample_pools()
                seen.append(value(parse(metrics.render().decode()), "agora_database_pool_connections", **labels))
        return seen

    labels = {"database": "sampled", "state": "in_use"}
    assert asyncio.run(scrape_twice()) == [1, 2]
    metrics.sample_pools()  # the app stopped: its pools are no longer asked
    assert pools["in_use"] == 2


@pytest.mark.skipif(not IS_POSTGRESQL, reason="SQLite has no pool to report")
def test_the_primary_pool_is_reported(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        assert http.get("/ready").status_code == 200
        families = scrape(http)
    assert value(families, "agora_database_pool_max_connections", database="primary") > 0


# --- who may read them ------------------------------------------------------------------------


def test_a_client_outside_the_allowed_networks_gets_the_404_of_an_unknown_path(live_server: str) -> None:
    # uvicorn takes the client's address from X-Forwarded-For when the peer is a trusted
    # proxy (FORWARDED_ALLOW_IPS, 127.0.0.1 by default): here, the internet behind a local proxy.
    with httpx.Client(base_url=live_server, headers={"X-Forwarded-For": OUTSIDER}, timeout=10) as http:
        refused = [http.get(path) for path in ("/metrics", "/metrics/")]
        unknown = http.get("/no-such-path")
    for response in refused:
        assert (
            (response.status_code, response.json())
            == (unknown.status_code, unknown.json())
            == (404, {"detail": "Not Found"})
        )
        assert response.headers["content-type"] == unknown.headers["content-type"]
    with httpx.Client(base_url=live_server, headers={"X-Forwarded-For": "10.1.2.3"}, timeout=10) as http:
        assert http.get("/metrics").status_code == 200  # a private address is let in


def test_the_allowed_networks_and_the_token_are_settings(make_app: Callable[..., TestClient]) -> None:
    assert make_app(OUTSIDER).get("/metrics").status_code == 404
    assert make_app(OUTSIDER, METRICS_ALLOWED_NETWORKS="203.0.113.0/24").get("/metrics").status_code == 200
    assert make_app("::1").get("/metrics").status_code == 200
    assert make_app("::ffff:192.168.1.20").get("/metrics").status_code == 200  # IPv4 on a dual-stack socket
    assert make_app("127.0.0.1", METRICS_ALLOWED_NETWORKS="").get("/metrics").status_code == 404  # nobody

    token = "a-long-random-metrics-token"
    inside = make_app("10.0.0.5", METRICS_TOKEN=token)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        response = inside.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert inside.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    outside = make_app(OUTSIDER, METRICS_TOKEN=token)
    assert outside.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_the_session_test_client_is_no_address_and_is_refused(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 404


def test_metrics_can_be_switched_off(make_app: Callable[..., TestClient]) -> None:
    reader = make_app()
    off = make_app(METRICS_ENABLED="false")
    before = scrape(reader)
    assert off.get("/metrics").status_code == 404
    assert off.get("/health").status_code == 200
    after = scrape(reader)
    assert requests(after, "GET", "/metrics", 404) == requests(before, "GET", "/metrics", 404)  # nothing recorded
    assert requests(after, "GET", "/health", 200) == requests(before, "GET", "/health", 200)
    assert "/metrics" not in {getattr(route, "path", None) for route in off.app.routes}  # type: ignore[attr-defined]


def test_bad_allowed_networks_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="METRICS_ALLOWED_NETWORKS"):
        Settings(METRICS_ALLOWED_NETWORKS="10.0.0.0/8, not-a-network")
    with pytest.raises(ValueError, match="METRICS_ALLOWED_NETWORKS"):
        Settings(METRICS_ALLOWED_NETWORKS="10.0.0.1/8")  # host bits set: probably not what was meant
    assert [str(n) for n in Settings(METRICS_ALLOWED_NETWORKS="10.0.0.0/8, ::1").METRICS_ALLOWED_NETWORKS] == [
        "10.0.0.0/8",
        "::1/128",
    ]


# --- several workers ----------------------------------------------------------------------------


def test_the_run_command_prepares_the_shared_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_DIR_VARIABLE, raising=False)
    assert metrics.prepare_multiprocess(1) is None  # one process keeps its figures in memory
    assert metrics.MULTIPROC_DIR_VARIABLE not in os.environ

    made = metrics.prepare_multiprocess(2)
    assert made is not None and made.is_dir() and not list(made.iterdir())
    assert os.environ[metrics.MULTIPROC_DIR_VARIABLE] == str(made)
    made.rmdir()

    chosen = tmp_path / "chosen"
    chosen.mkdir()
    for name in ("counter_1.db", "histogram_1.db", f"counter_{os.getpid()}.db", "notes.txt"):
        (chosen / name).write_bytes(b"")
    monkeypatch.setenv(metrics.MULTIPROC_DIR_VARIABLE, str(chosen))
    assert metrics.prepare_multiprocess(2) is None  # the operator's directory is kept...
    assert sorted(p.name for p in chosen.iterdir()) == [f"counter_{os.getpid()}.db", "notes.txt"]  # ...emptied


def children(pid: int) -> list[int]:
    """The worker processes of the server `pid` (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmdline:
                found.append(int(entry.name))
    return found


def get(port: int, path: str) -> tuple[int, str]:
    """One request on a connection of its own: each may land on either worker."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except ConnectionError:
        return 0, ""
    finally:
        connection.close()


def scrape_port(port: int) -> Families:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return parse(text)


def samples_in(directory: Path, pattern: str) -> list[Sample]:
    """The samples of the files `pattern` names in `directory`, read the way a scrape reads all of them."""
    files = [str(f) for f in directory.glob(pattern)]
    if not files:
        return []
    families = MultiProcessCollector(None, path=str(directory)).merge(files)  # type: ignore[no-untyped-call]
    return [sample for family in families for sample in family.samples]


def per_worker_health_counts(directory: Path, workers: list[int]) -> dict[int, float]:
    """GET /health 200s in each worker's own file."""
    return {
        pid: sum(
            sample.value
            for sample in samples_in(directory, f"histogram_{pid}.db")
            if sample.name == f"{REQUESTS}_count" and sample.labels.get("route") == "/health"
        )
        for pid in workers
    }


def worker_gauge(directory: Path, pid: int) -> float | None:
    """`agora_worker_processes` in the live gauges' file of worker `pid` (1 once its app has started)."""
    found = [s.value for s in samples_in(directory, f"gauge_livesum_{pid}.db") if s.name == "agora_worker_processes"]
    return found[0] if found else None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers and their directory in /proc")
def test_a_scrape_adds_up_every_worker(tmp_path: Path) -> None:
    """`python -m app --workers 2`, as production runs it: every scrape sums both workers; a crash loses nothing
    already written."""
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": "metrics-workers-test-secret-key-0123456789-abcdef",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'workers.db'}",
        "RATE_LIMIT_ENABLED": "false",
        "ACCESS_LOG_ENABLED": "false",
    }
    env.pop(metrics.MULTIPROC_DIR_VARIABLE, None)  # the default: the run command makes the directory
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--workers", "2", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def serving_workers() -> list[int] | None:
            workers = children(server.pid)
            return workers if len(workers) == 2 and get(port, "/health")[0] == 200 else None

        workers = wait_for(serving_workers, server)
        # The directory the run command made, as the workers inherited it.
        environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0") if v)
        directory = Path(environ[metrics.MULTIPROC_DIR_VARIABLE.encode()].decode())
        assert directory.is_dir()

        # Each worker writes its observations every FLUSH_SECONDS: those of the start-up checks first.
        time.sleep(2 * metrics.FLUSH_SECONDS)
        base = requests(scrape_port(port), "GET", "/health", 200)
        sent = 0
        # Until each worker has answered some: the kernel picks who accepts, and a worker
        # may still be starting when the first one already answers (seen in CI: 500 in a row).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for _ in range(10):
                assert get(port, "/health")[0] == 200
                sent += 1
            if all(per_worker_health_counts(directory, workers).values()):
                break
            time.sleep(0.05)
        time.sleep(2 * metrics.FLUSH_SECONDS)  # the last of them written
        per_worker = per_worker_health_counts(directory, workers)
        assert all(per_worker.values()), per_worker
        assert sum(per_worker.values()) == base + sent

        for _ in range(6):  # whichever worker answers the scrape
            families = scrape_port(port)
            assert requests(families, "GET", "/health", 200) == base + sent
            assert value(families, "agora_worker_processes") == 2
        assert not [s for s in families[REQUESTS] if "pid" in s.labels]

        # A worker killed outright: uvicorn starts another; the dead one's requests stay
        # counted, and its live gauge (agora_worker_processes) goes at the next scrape.
        killed = workers[0]
        os.kill(killed, signal.SIGKILL)
        replacement = wait_for(lambda: [pid for pid in children(server.pid) if pid not in workers] or None, server)
        wait_for(lambda: worker_gauge(directory, replacement[0]) == 1, server)  # it has started serving
        families = scrape_port(port)
        assert value(families, "agora_worker_processes") == 2
        assert requests(families, "GET", "/health", 200) == base + sent
        assert not (directory / f"gauge_livesum_{killed}.db").exists()
        assert (directory / f"histogram_{killed}.db").exists()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    assert not directory.exists()  # made by the run command, removed when it stops


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], server: subprocess.Popen[bytes], seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited (see server.log in the test's tmp_path)"
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail("the server did not get there within 30 s")
