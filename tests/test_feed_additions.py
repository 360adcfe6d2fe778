"""What issue 16 added to reading posts, over HTTP: `voted`, `owner_id`, the next page's `Link`,
and other people's email addresses kept private (`PUBLIC_EMAILS=false`)."""

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from conftest import TEST_DATABASE_URL, Account, misanswered
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.config import Settings
from app.main import create_app


def new_post(client: TestClient, account: Account, **fields: Any) -> int:
    response = client.post("/posts/", json={"title": "A title", "content": "c", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def vote(client: TestClient, account: Account, post_id: int, direction: int = 1) -> None:
    response = client.post("/vote/", json={"post_id": post_id, "dir": direction}, headers=account.headers)
    assert response.status_code == 201, response.text


def page(client: TestClient, account: Account, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/posts/", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def ids(client: TestClient, account: Account, **params: Any) -> list[int]:
    return [item["Post"]["id"] for item in page(client, account, **params)]


# --- voted ----------------------------------------------------------------------------------


def test_the_feed_and_one_post_say_whether_you_voted(client: TestClient, make_account: Callable[..., Account]) -> None:
    author, voter = make_account(), make_account()
    voted_on, not_voted_on = new_post(client, author), new_post(client, author)
    vote(client, voter, voted_on)
    vote(client, author, not_voted_on)  # someone else's vote is not yours

    as_voter = {item["Post"]["id"]: (item["votes"], item["voted"]) for item in page(client, voter)}
    as_author = {item["Post"]["id"]: (item["votes"], item["voted"]) for item in page(client, author)}

    assert as_voter == {voted_on: (1, True), not_voted_on: (1, False)}
    assert as_author == {voted_on: (1, False), not_voted_on: (1, True)}
    one = client.get(f"/posts/{voted_on}", headers=voter.headers).json()
    assert (one["votes"], one["voted"]) == (1, True)
    vote(client, voter, voted_on, 0)
    assert client.get(f"/posts/{voted_on}", headers=voter.headers).json()["voted"] is False


def test_voted_is_a_json_boolean_everywhere(client: TestClient, make_account: Callable[..., Account]) -> None:
    author = make_account()
    post_id = new_post(client, author, title="findable")
    vote(client, author, post_id)
    answers = [
        client.get("/posts/", headers=author.headers),
        client.get("/posts/?search=findable", headers=author.headers),
        client.get(f"/posts/?owner_id={author.id}", headers=author.headers),
        client.get(f"/posts/{post_id}", headers=author.headers),
    ]
    texts = [answer.text for answer in answers]
    assert all('"voted":true' in body for body in texts), texts


# --- owner_id -------------------------------------------------------------------------------


def test_owner_id_lists_one_authors_posts_newest_first(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    ann, bob = make_account(), make_account()
    anns = [new_post(client, ann, title=f"ann {i}") for i in range(3)]
    new_post(client, bob, title="bob")

    assert ids(client, bob, owner_id=ann.id) == anns[::-1]
    assert all(item["Post"]["owner_id"] == ann.id for item in page(client, bob, owner_id=ann.id))


def test_owner_id_shows_drafts_to_their_owner_only(client: TestClient, make_account: Callable[..., Account]) -> None:
    ann, bob = make_account(), make_account()
    published = new_post(client, ann)
    draft = new_post(client, ann, published=False)
    bobs_draft = new_post(client, bob, published=False)

    assert ids(client, ann, owner_id=ann.id) == [draft, published]
    assert ids(client, bob, owner_id=ann.id) == [published]
    assert ids(client, ann, owner_id=bob.id) == []
    assert ids(client, bob, owner_id=bob.id) == [bobs_draft]


def test_owner_id_combines_with_search_limit_skip_and_before_id(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    ann, bob = make_account(), make_account()
    anns = [new_post(client, ann, title=f"{'cat' if i % 2 else 'dog'} {i}") for i in range(10)]
    for i in range(5):
        new_post(client, bob, title=f"cat {i}")
    newest_first = anns[::-1]
    cats = [post_id for i, post_id in enumerate(anns) if i % 2][::-1]

    assert ids(client, bob, owner_id=ann.id, search="CAT") == cats
    assert ids(client, bob, owner_id=ann.id, limit=3, skip=2) == newest_first[2:5]
    assert ids(client, bob, owner_id=ann.id, before_id=newest_first[3]) == newest_first[4:]
    assert ids(client, bob, owner_id=ann.id, search="cat", before_id=cats[0], limit=2) == cats[1:3]


def test_owner_id_of_nobody_is_an_empty_page_and_a_bad_one_422(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    reader = make_account()
    new_post(client, reader)
    assert ids(client, reader, owner_id=reader.id + 1000) == []
    assert ids(client, reader, owner_id=2**31) == []  # beyond the INTEGER column: no such user
    bad = ["0", "-1", str(2**63), "x", "01", "1.0", ""]
    responses = {value: client.get(f"/posts/?owner_id={value}", headers=reader.headers) for value in bad}
    assert misanswered(422, responses) == {}


# --- the next page's Link --------------------------------------------------------------------

NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


def next_link(response: Any) -> str | None:
    header = response.headers.get("link")
    if header is None:
        return None
    match = NEXT.match(header)
    assert match, header
    return match[1]


def test_a_full_page_links_the_next_one_and_following_the_links_walks_the_feed(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    reader = make_account()
    posted = [new_post(client, reader, title=f"post {i}") for i in range(7)]

    walked: list[int] = []
    url: str | None = "/posts/?limit=3"
    pages = 0
    while url is not None:
        response = client.get(url, headers=reader.headers)
        assert response.status_code == 200, response.text
        walked += [item["Post"]["id"] for item in response.json()]
        pages += 1
        link = next_link(response)
        url = urljoin(str(response.url), link) if link is not None else None

    assert walked == posted[::-1]
    assert pages == 3  # 3 + 3 + 1: the short last page has no Link


def test_the_link_keeps_the_other_parameters_and_drops_skip(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    reader = make_account()
    for i in range(5):
        new_post(client, reader, title=f"cat & dog #{i}")
    response = client.get(
        "/posts", params={"limit": 2, "skip": 1, "search": "cat & dog", "owner_id": reader.id}, headers=reader.headers
    )
    link = next_link(response)
    assert link is not None
    target = urlsplit(link)
    assert (target.scheme, target.netloc, target.path) == ("", "", "/posts")  # relative: no Host header echoed
    query = dict(parse_qsl(target.query))
    last = response.json()[-1]["Post"]["id"]
    assert query == {"limit": "2", "search": "cat & dog", "owner_id": str(reader.id), "before_id": str(last)}
    following = client.get(urljoin(str(response.url), link), headers=reader.headers).json()
    assert following[0]["Post"]["id"] < last


def test_the_link_stays_well_formed_whatever_the_query_holds(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    """Characters a URI does not carry as they are come back escaped; a `skip` spelled with escapes still goes."""
    reader = make_account()
    for i in range(3):
        new_post(client, reader, title=f'a>b "quoted" <{i}>')
    for raw, expected in {
        'search=a>b "quoted"&limit=1': {"search": 'a>b "quoted"', "limit": "1"},
        "sk%69p=1&limit=1": {"limit": "1"},
        "limit=1&search=%3E&before_id=999999": None,  # a cursor that names no post: 422, no page
    }.items():
        response = client.get(f"/posts/?{raw}", headers=reader.headers)
        if expected is None:
            assert response.status_code == 422
            continue
        link = next_link(response)
        assert link is not None, raw
        assert NEXT.match(f'<{link}>; rel="next"') and " " not in link and '"' not in link, link
        query = dict(parse_qsl(urlsplit(link).query))
        assert query == {**expected, "before_id": str(response.json()[-1]["Post"]["id"])}


def test_a_raw_query_with_characters_a_uri_escapes_gets_a_well_formed_link(
    live_server: str, client: TestClient, make_account: Callable[..., Account]
) -> None:
    """Clients (httpx among them) escape such characters; one that sends them raw gets them escaped back."""
    reader = make_account()
    for i in range(2):
        new_post(client, reader, title=f"a>b<{i}>")
    host, port = urlsplit(live_server).hostname, urlsplit(live_server).port
    assert host is not None and port is not None
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"GET /posts/?search=a>b<&limit=1&skip=0 HTTP/1.1\r\nHost: t\r\n"
            + f"Authorization: Bearer {reader.token}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    (link_line,) = [line for line in head.split("\r\n") if line.lower().startswith("link:")]
    match = NEXT.match(link_line.split(":", 1)[1].strip())
    assert match, link_line
    assert "<" not in match[1] and ">" not in match[1]
    query = dict(parse_qsl(urlsplit(match[1]).query))
    assert query.pop("before_id").isdigit()
    assert query == {"search": "a>b<", "limit": "1"}


def test_a_page_shorter_than_the_limit_has_no_link(client: TestClient, make_account: Callable[..., Account]) -> None:
    reader = make_account()
    new_post(client, reader)
    assert next_link(client.get("/posts/", headers=reader.headers)) is None
    assert next_link(client.get("/posts/?limit=1", headers=reader.headers)) is not None
    assert next_link(client.get("/posts/?search=nothing-like-it", headers=reader.headers)) is None
    assert client.head("/posts/?limit=1", headers=reader.headers).headers.get("link") is not None


# --- private email addresses ------------------------------------------------------------------


@pytest.fixture
def private_emails(client: TestClient) -> Iterator[TestClient]:
    """The API with PUBLIC_EMAILS=false, on the same test database as `client`."""
    with TestClient(create_app(Settings(DATABASE_URL=TEST_DATABASE_URL, PUBLIC_EMAILS=False))) as other:
        yield other


def test_by_default_every_author_email_is_shown_as_in_the_course(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    author, reader = make_account(), make_account()
    post_id = new_post(client, author)
    assert page(client, reader)[0]["Post"]["owner"]["email"] == author.email
    assert client.get(f"/posts/{post_id}", headers=reader.headers).json()["Post"]["owner"]["email"] == author.email
    assert client.get(f"/users/{author.id}", headers=reader.headers).json()["email"] == author.email


def test_private_emails_hide_other_peoples_addresses_and_keep_the_shapes(
    private_emails: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    author, reader = make_account(), make_account()
    api = private_emails
    post_id = new_post(api, author)

    seen_by_reader = [
        page(api, reader)[0]["Post"]["owner"],
        page(api, reader, owner_id=author.id)[0]["Post"]["owner"],
        api.get(f"/posts/{post_id}", headers=reader.headers).json()["Post"]["owner"],
        api.get(f"/users/{author.id}", headers=reader.headers).json(),
    ]
    assert all(set(owner) == {"id", "email", "created_at"} for owner in seen_by_reader)
    assert all(owner["id"] == author.id and owner["email"] is None for owner in seen_by_reader)
    assert author.email not in str(seen_by_reader)

    # Your own address stays yours to see.
    assert page(api, author)[0]["Post"]["owner"]["email"] == author.email
    assert api.get(f"/users/{author.id}", headers=author.headers).json()["email"] == author.email
    assert api.get("/users/me", headers=reader.headers).json()["email"] == reader.email
    created = api.post("/posts/", json={"title": "t", "content": "c"}, headers=reader.headers).json()
    assert created["owner"]["email"] == reader.email
    assert sql.execute(text("SELECT count(*) FROM users")).scalar_one() == 2
