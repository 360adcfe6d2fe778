"""Property-based tests (Hypothesis) of the pure pieces: passwords, tokens, paging bounds, LIKE escaping, validators.

Each property is checked on a modest number of generated examples so the module takes a few seconds;
`PROPERTY_MAX_EXAMPLES=5000` runs many more.
"""

import os
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import jwt
import pytest
from conftest import Account
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api.schemas import INT64_MAX, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, UserCreate, phone_number, storable
from app.config import Settings
from app.db.statements import LIKE_ESCAPE, like_pattern
from app.security import Passwords, Tokens, create_access_token

# Pure functions: cheap examples, a fixed sequence of them (the same run locally and in CI).
# PROPERTY_MAX_EXAMPLES=5000 explores further.
PURE = settings(deadline=None, derandomize=True, max_examples=int(os.environ.get("PROPERTY_MAX_EXAMPLES", "60")))
# Through the API: every example is a request, so fewer of them.
HTTP_EXAMPLES = settings(
    PURE, max_examples=max(25, PURE.max_examples // 4), suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any text at all, lone surrogates and NUL included (Hypothesis leaves surrogates out unless asked).
any_character = st.characters(exclude_categories=())
any_text = st.text(any_character, max_size=40)
# Text that a database can store: what the API's StorableStr lets through.
storable_character = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

EMAIL = "someone@example.com"


# --- passwords -----------------------------------------------------------------


def schema_accepts_password(password: str) -> bool:
    try:
        UserCreate(email=EMAIL, password=password)
    except ValidationError:
        return False
    return True


@PURE
@given(
    st.text(storable_character, min_size=PASSWORD_MIN_LENGTH, max_size=PASSWORD_MAX_LENGTH),
    st.text(storable_character, min_size=1, max_size=PASSWORD_MAX_LENGTH),
)
@example("correct horse battery", "correct horse battery ")
@example("é" * PASSWORD_MIN_LENGTH, "e\u0301" * PASSWORD_MIN_LENGTH)  # same text to a reader, different code points
def test_every_password_the_schema_accepts_hashes_and_verifies_and_no_other_does(password: str, other: str) -> None:
    assume(other != password)
    assert schema_accepts_password(password)
    password_hash = PASSWORDS.hash(password)
    assert password not in password_hash
    assert PASSWORDS.verify(password, password_hash) == (True, None)
    assert PASSWORDS.verify(other, password_hash) == (False, None)


@PURE
@given(st.text(any_character, max_size=PASSWORD_MAX_LENGTH + 20))
@example("x" * (PASSWORD_MIN_LENGTH - 1))
@example("x" * (PASSWORD_MAX_LENGTH + 1))
@example("long enough\x00")
@example("long enough\ud800")
def test_the_schema_accepts_exactly_8_to_128_storable_characters(password: str) -> None:
    storable_text = "\x00" not in password and not any(0xD800 <= ord(c) <= 0xDFFF for c in password)
    expected = storable_text and PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH
    assert schema_accepts_password(password) == expected


# --- access tokens -------------------------------------------------------------

SECRET = Settings().SECRET_KEY
PASSWORDS = Passwords.from_settings(Settings())
_TOKENS: dict[str, Tokens] = {}


def user_id_from_token(token: str, *, secret_key: str) -> int | None:
    """What an app signing with `secret_key` makes of `token` (one `Tokens`, and so one memo, per key)."""
    tokens = _TOKENS.setdefault(secret_key, Tokens(secret_key=secret_key, lifetime=timedelta(hours=1)))
    return tokens.user_id(token)


user_ids = st.integers(min_value=1, max_value=INT64_MAX)
HOUR = timedelta(hours=1)
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@PURE
@given(user_ids)
@example(1)
@example(INT64_MAX)
def test_a_token_names_the_user_it_was_made_for(user_id: int) -> None:
    token = create_access_token(user_id, generation=0, secret_key=SECRET, expires_in=HOUR)
    assert user_id_from_token(token, secret_key=SECRET) == user_id


@PURE
@given(user_ids, st.integers(min_value=0, max_value=2**31 - 1))
@example(1, 0)
@example(INT64_MAX, 2**31 - 1)
def test_a_token_carries_the_generation_it_was_issued_at(user_id: int, generation: int) -> None:
    tokens = _TOKENS.setdefault(SECRET, Tokens(secret_key=SECRET, lifetime=HOUR))
    verified = tokens.verify(tokens.issue(user_id, generation))
    assert verified is not None
    assert (verified.user_id, verified.generation) == (user_id, generation)


@PURE
@given(user_ids, st.data())
def test_changing_any_character_of_a_token_invalidates_it(user_id: int, data: st.DataObject) -> None:
    token = create_access_token(user_id, generation=0, secret_key=SECRET, expires_in=HOUR)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    replacement = data.draw(st.sampled_from(BASE64URL + ".=+/ ").filter(lambda c: c != token[position]))
    tampered = token[:position] + replacement + token[position + 1 :]
    # Header and payload are signed as sent; the signature must be exactly the one computed, in canonical
    # base64url (a changed last character that only flips its unused low bits is refused too).
    assert user_id_from_token(tampered, secret_key=SECRET) is None


@PURE
@given(user_ids)
def test_a_signature_spelled_with_other_unused_bits_is_refused(user_id: int) -> None:
    """The signature's last base64url character carries 4 bits and 2 unused ones: the other 3 spellings fail."""
    token = create_access_token(user_id, generation=0, secret_key=SECRET, expires_in=HOUR)
    last = BASE64URL.index(token[-1])
    for low_bits in range(4):
        spelling = BASE64URL[(last & ~3) | low_bits]
        if spelling != token[-1]:
            assert user_id_from_token(token[:-1] + spelling, secret_key=SECRET) is None


@PURE
@given(user_ids, st.text(min_size=32, max_size=64))
def test_a_token_signed_with_another_key_is_refused(user_id: int, other_secret: str) -> None:
    assume(other_secret != SECRET)
    token = create_access_token(user_id, generation=0, secret_key=other_secret, expires_in=HOUR)
    assert user_id_from_token(token, secret_key=SECRET) is None


@PURE
@given(user_ids, st.integers(min_value=1, max_value=10 * 365 * 24 * 3600), st.integers(min_value=1, max_value=3600))
def test_an_expired_token_is_refused(user_id: int, lifetime_seconds: int, expired_for_seconds: int) -> None:
    issued = datetime.now(UTC) - timedelta(seconds=lifetime_seconds + expired_for_seconds)
    token = create_access_token(
        user_id, generation=0, secret_key=SECRET, expires_in=timedelta(seconds=lifetime_seconds), now=issued
    )
    assert user_id_from_token(token, secret_key=SECRET) is None


@PURE
@given(user_ids, st.integers(min_value=2, max_value=3600))
def test_a_token_accepted_before_is_refused_once_it_expires(user_id: int, lifetime_seconds: int) -> None:
    """Valid tokens are remembered after their first check (app/security.py); the memo must not outlive them."""
    token = create_access_token(
        user_id, generation=0, secret_key=SECRET, expires_in=timedelta(seconds=lifetime_seconds)
    )
    assert user_id_from_token(token, secret_key=SECRET) == user_id
    assert user_id_from_token(token, secret_key=SECRET) == user_id  # from the memo this time
    expiry = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    with patch("app.security.time.time", return_value=expiry - 0.5):
        assert user_id_from_token(token, secret_key=SECRET) == user_id
    with patch("app.security.time.time", return_value=expiry):
        assert user_id_from_token(token, secret_key=SECRET) is None
    assert user_id_from_token(token, secret_key=SECRET + "-rotated") is None  # remembered per key


@PURE
@given(st.text(max_size=200))
def test_arbitrary_text_is_never_a_valid_token(text: str) -> None:
    assert user_id_from_token(text, secret_key=SECRET) is None


# --- paging bounds, through the API ----------------------------------------------


@pytest.fixture
def reader(make_account: Callable[..., Account]) -> Account:
    return make_account()


@HTTP_EXAMPLES
@given(limit=st.integers(min_value=1, max_value=100), skip=st.integers(min_value=0, max_value=INT64_MAX))
@example(limit=1, skip=0)
@example(limit=100, skip=INT64_MAX)
def test_any_limit_from_1_to_100_and_skip_from_0_to_2_63_minus_1_is_accepted(
    client: TestClient, reader: Account, limit: int, skip: int
) -> None:
    response = client.get("/posts/", params={"limit": limit, "skip": skip}, headers=reader.headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


bad_limits = st.integers(max_value=0) | st.integers(min_value=101)
bad_skips = st.integers(max_value=-1) | st.integers(min_value=INT64_MAX + 1)


@HTTP_EXAMPLES
@given(params=st.fixed_dictionaries({"limit": bad_limits}) | st.fixed_dictionaries({"skip": bad_skips}))
@example(params={"limit": 0})
@example(params={"limit": 101})
@example(params={"skip": -1})
@example(params={"skip": INT64_MAX + 1})
def test_a_limit_or_skip_out_of_bounds_is_422(client: TestClient, reader: Account, params: dict[str, int]) -> None:
    response = client.get("/posts/", params=params, headers=reader.headers)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", next(iter(params))]


# --- LIKE patterns ---------------------------------------------------------------


def like_matches(pattern: str, value: str, escape: str = LIKE_ESCAPE) -> bool:
    """SQL's `value LIKE pattern ESCAPE escape`, case-sensitive: a reference implementation."""
    regex, characters = [], iter(pattern)
    for character in characters:
        if character == escape:
            literal = next(characters, None)
            assert literal is not None, "a pattern must not end with the escape character"
            regex.append(re.escape(literal))
        elif character == "%":
            regex.append(".*")
        elif character == "_":
            regex.append(".")
        else:
            regex.append(re.escape(character))
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


@pytest.fixture(scope="module")
def sqlite_like() -> Callable[[str, str], bool]:
    database = sqlite3.connect(":memory:")
    database.execute("PRAGMA case_sensitive_like = ON")

    def matches(pattern: str, value: str) -> bool:
        row = database.execute(f"SELECT ? LIKE ? ESCAPE '{LIKE_ESCAPE}'", (value, pattern)).fetchone()
        return bool(row[0])

    return matches


# Mostly the characters LIKE treats specially, so that they meet each other often.
like_text = st.text(st.sampled_from("%_/\\ab") | storable_character, max_size=12)


@st.composite
def text_and_candidate(draw: st.DrawFn) -> tuple[str, str]:
    """A search text, and a string that contains it half of the time."""
    text = draw(like_text)
    if draw(st.booleans()):
        return text, draw(like_text) + text + draw(like_text)
    return text, draw(like_text)


@PURE
@given(text_and_candidate())
@example(("%", "100%"))
@example(("%", "100"))
@example(("_", "a"))
@example(("/", "a/b"))
@example(("/%", "/x"))
@example(("a_c", "abc"))
@example(("", "anything"))
def test_a_like_pattern_matches_exactly_the_strings_containing_the_text(case: tuple[str, str]) -> None:
    text, candidate = case
    assert like_matches(like_pattern(text), candidate) == (text in candidate)


@PURE
@given(text_and_candidate())
@example(("%", "100"))
@example(("_", "a"))
@example(("//", "a/b"))
def test_sqlite_agrees_with_the_reference_like(sqlite_like: Callable[[str, str], bool], case: tuple[str, str]) -> None:
    text, candidate = case
    pattern = like_pattern(text)
    assert sqlite_like(pattern, candidate) == like_matches(pattern, candidate) == (text in candidate)


# --- validators ------------------------------------------------------------------


@PURE
@given(any_text)
@example("a\x00b")
@example("\ud800")
@example("\udfff tail")
@example("\U0001f600")
def test_storable_refuses_exactly_nul_and_lone_surrogates(text: str) -> None:
    storable_text = "\x00" not in text and all(not 0xD800 <= ord(c) <= 0xDFFF for c in text)
    if storable_text:
        assert storable(text) == text
    else:
        with pytest.raises(ValueError):
            storable(text)


PHONE_PUNCTUATION = " \t().-"
punctuation = st.text(st.sampled_from(PHONE_PUNCTUATION), max_size=2)


@st.composite
def spelled_phone_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A phone number as stored (optional +, 7 to 15 digits) and a way a person might type it."""
    plus = draw(st.sampled_from(["", "+"]))
    digits = draw(st.text(st.sampled_from("0123456789"), min_size=7, max_size=15))
    spelled = draw(punctuation) + plus + "".join(draw(punctuation) + digit for digit in digits) + draw(punctuation)
    return plus + digits, spelled


@PURE
@given(spelled_phone_numbers())
@example(("+4930123456", "+49 (30) 123-456"))
@example(("0012345", "001.23.45"))
def test_any_spelling_of_a_phone_number_is_stored_as_its_digits(case: tuple[str, str]) -> None:
    stored, spelled = case
    assert phone_number(spelled) == stored


@PURE
@given(st.text(st.sampled_from("0123456789+ ().-x٣") | any_character, max_size=24))
@example("123456")  # 6 digits
@example("1234567890123456")  # 16 digits
@example("12+34567")  # + not in front
@example("++1234567")
@example("١٢٣٤٥٦٧")  # digits, but not ASCII ones
@example("")
def test_a_phone_number_is_accepted_exactly_when_its_digits_are_7_to_15_with_an_optional_plus(text: str) -> None:
    compact = re.sub(r"[\s().-]", "", text)
    valid = re.fullmatch(r"\+?[0-9]{7,15}", compact, re.ASCII) is not None
    if valid:
        assert phone_number(text) == compact
    else:
        with pytest.raises(ValueError):
            phone_number(text)
