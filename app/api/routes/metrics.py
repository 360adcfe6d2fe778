"""GET /metrics: the Prometheus scrape, for the monitoring network only (README, "Metrics").

Not in the OpenAPI document: it is for operators' scrapers, not the API's clients. A
client outside `METRICS_ALLOWED_NETWORKS` gets the very 404 of a path that does not
exist: from the internet, /metrics is not there, and a scanner cannot tell otherwise.
Inside them, with `METRICS_TOKEN` set, a missing or wrong token is 401 with
`WWW-Authenticate: Bearer`, which helps whoever configures the scraper.
"""

import hmac
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from anyio.to_thread import run_sync
from fastapi import HTTPException, Request, Response, status

from app.api.routing import SlashAgnosticRouter
from app.config import Settings
from app.http.metrics import CONTENT_TYPE, flush, render, sample_pools

router = SlashAgnosticRouter(tags=["metrics"])  # /metrics and /metrics/


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    client = request.client
    if client is None or not address_allowed(client.host, settings.METRICS_ALLOWED_NETWORKS):
        raise HTTPException(status.HTTP_404_NOT_FOUND)  # what Starlette answers for an unknown path
    if settings.METRICS_TOKEN and not token_matches(request.headers.get("authorization"), settings.METRICS_TOKEN):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Missing or wrong metrics token", headers={"WWW-Authenticate": "Bearer"}
        )
    sample_pools()  # on the event loop, where the pools live
    flush()  # and the observations this worker has gathered
    return Response(await run_sync(render), media_type=CONTENT_TYPE)


def address_allowed(host: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether `host`, an IP address as the server gives it, is in one of `networks` (anything else: no)."""
    try:
        address = ip_address(host)
    except ValueError:  # not an address (a test client's name, a Unix socket's path)
        return False
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:10.1.2.3 on a dual-stack socket
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def token_matches(authorization: str | None, token: str) -> bool:
    scheme, _, credentials = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())
