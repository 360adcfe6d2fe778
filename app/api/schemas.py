"""Request and response bodies: what the API accepts and what it answers."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

# Ids (and counts such as `skip`) the API accepts: positive and within a signed 64-bit
# integer, whatever the columns hold today (an id beyond the column finds nothing).
INT64_MAX = 2**63 - 1
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# A password to check (login, confirmations): long enough for any password we accept at
# registration, short enough that hashing it costs nothing unusual.
LOGIN_PASSWORD_MAX_LENGTH = 1024
TITLE_MAX_LENGTH = 300
CONTENT_MAX_LENGTH = 20_000
SEARCH_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_PART_MAX_LENGTH = 64


def storable(value: str) -> str:
    """Refuse text no database can store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def email_address(value: str) -> str:
    """A syntactically valid address in normal form (NFC, lower-case domain).

    The local part must be ASCII: SQL's lower() then compares addresses the same way
    on every database, so uniqueness ignoring case means the same everywhere.
    Display-name forms ("Ann <ann@example.com>") are refused: what you type to log
    in must be the address itself.
    """
    try:
        address = validate_email(value.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    if len(address.local_part) > EMAIL_LOCAL_PART_MAX_LENGTH:  # RFC 5321, 4.5.3.1.1 (ASCII: characters are octets)
        raise ValueError(f"not a valid email address: more than {EMAIL_LOCAL_PART_MAX_LENGTH} characters before the @")
    return address.normalized


_PLAIN_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def plain_decimal(value: object) -> object:
    """Numbers in paths and query strings: plain ASCII digits only.

    Python's int() (and pydantic's lax mode) also read `1_0`, `+1`, ` 1`, `01` and `1.0`,
    so `/posts/1_0` was post 10; every other spelling of a number is refused instead.
    """
    if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError("must be a whole number written with plain decimal digits")
    return value


# For path and query parameters: `Annotated[int, PLAIN_DECIMAL, Query(...)]`.
PLAIN_DECIMAL = BeforeValidator(plain_decimal)


def not_blank(value: str) -> str:
    """At least one visible character: not only white space, control or format characters."""
    if not _VISIBLE.search(value):
        raise ValueError("must not be blank (white space and invisible characters do not count)")
    return value


_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_PHONE_NUMBER = re.compile(r"\+?[0-9]{7,15}")


def phone_number(value: str) -> str:
    """Accept common spellings (spaces, dashes, dots, parentheses); store digits with an optional leading +."""
    compact = _PHONE_PUNCTUATION.sub("", value)
    if not _PHONE_NUMBER.fullmatch(compact):
        raise ValueError("must be a phone number of 7 to 15 digits, optionally starting with +")
    return compact


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones: answer the same from both."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The rules above as JSON Schema patterns, for the documentation only (the validators stay the judges).
# SPACE is exactly what str.isspace() accepts, spelled alike for Python, ECMA-262 and Rust regexes.
SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# INVISIBLE: control characters, and format and filler characters that render as nothing
# (soft hyphen, zero-width space and joiners, bidi marks, word joiner, variation selectors,
# BOM, Hangul fillers, Braille blank): a title made only of them looks empty.
INVISIBLE = (
    r"\x01-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
STORABLE_PATTERN = r"^[^\x00]*$"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{SPACE}{INVISIBLE}][^\x00]*$"
_VISIBLE = re.compile(rf"[^{SPACE}{INVISIBLE}]")
PHONE_PATTERN = rf"^[{SPACE}().-]*\+?(?:[{SPACE}().-]*[0-9]){{7,15}}[{SPACE}().-]*$"


def documented_pattern(pattern: str) -> Any:
    return Field(json_schema_extra={"pattern": pattern})


# Length constraints come first in each chain: placed after a validator, pydantic checks
# them as a generic length and says "items" where it means characters.
STORABLE = AfterValidator(storable)
StorableStr = Annotated[str, STORABLE, documented_pattern(STORABLE_PATTERN)]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    STORABLE,
    documented_pattern(STORABLE_PATTERN),
]
# A password to check, not to store: accounts adopted from the course app may hold
# passwords outside today's rules, so only the bounds of a login apply.
CurrentPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=LOGIN_PASSWORD_MAX_LENGTH),
    STORABLE,
    documented_pattern(STORABLE_PATTERN),
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TITLE_MAX_LENGTH),
    STORABLE,
    AfterValidator(not_blank),
    documented_pattern(NOT_BLANK_PATTERN),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTENT_MAX_LENGTH),
    STORABLE,
    AfterValidator(not_blank),
    documented_pattern(NOT_BLANK_PATTERN),
]
PhoneNumber = Annotated[
    str, StringConstraints(max_length=32), STORABLE, AfterValidator(phone_number), documented_pattern(PHONE_PATTERN)
]
Email = Annotated[
    str,
    StringConstraints(max_length=EMAIL_MAX_LENGTH),
    STORABLE,  # format "email" already rules out NUL (and a pattern next to it slows generators down)
    AfterValidator(email_address),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": EMAIL_MAX_LENGTH}),
]
RowId = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc), PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class Body(BaseModel):
    """Request bodies: a field the API does not know is refused (422), not silently dropped."""

    model_config = ConfigDict(str_strip_whitespace=False, extra="forbid")


class UserCreate(Body):
    email: Email
    password: Password
    phone_number: PhoneNumber | None = None


class UserOut(BaseModel):
    id: int
    email: str
    created_at: UtcDatetime


class UserMe(UserOut):
    phone_number: str | None


class PublicUser(BaseModel):
    """Someone's public profile, as `GET /users/{id}` and each post's `owner` show it."""

    id: int
    email: str | None = Field(
        description="null when the server keeps other people's addresses private (PUBLIC_EMAILS=false) "
        "and this is not you"
    )
    created_at: UtcDatetime


class UserPatch(Body):
    """`PATCH /users/me`: the fields sent change; `phone_number: null` clears the number."""

    phone_number: PhoneNumber | None = Field(
        default=None, description="7-15 digits, optional leading +; null removes it; left out, it stays"
    )


class PasswordChange(Body):
    current_password: CurrentPassword
    new_password: Password


class AccountDeletion(Body):
    password: Annotated[CurrentPassword, Field(description="Your current password, to confirm")]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class PostCreate(Body):
    title: Title
    content: Content
    published: StrictBool = True


class PostReplace(PostCreate):
    """PUT replaces every field; `published` falls back to true, as on create."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class PostPatch(Body):
    """PATCH changes only the fields sent; none of them may be null."""

    # Left out means unchanged; null is refused (below), so the schema offers no null either.
    title: Title | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    content: Content | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    published: StrictBool | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: object) -> object:
        if isinstance(data, dict):
            nulls = sorted(str(key) for key, value in data.items() if value is None and key in cls.model_fields)
            if nulls:
                raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return data


class PostOut(BaseModel):
    id: int
    title: str
    content: str
    published: bool
    created_at: UtcDatetime
    owner_id: int
    owner: PublicUser


class PostWithVotes(BaseModel):
    """A post as the list and the detail endpoints show it (the course's shape)."""

    Post: PostOut
    votes: int
    voted: bool = Field(description="Whether you have voted on this post")


class VoteIn(Body):
    post_id: RowId
    dir: Annotated[StrictInt, Field(ge=0, le=1, description="1 adds your vote, 0 takes it back")]


class Message(BaseModel):
    message: str


class ErrorOut(BaseModel):
    detail: str
