"""What can go wrong in the domain, in its own words; app/api/errors.py gives each its HTTP answer."""


class DomainError(Exception):
    """A request the domain refuses; `detail` is safe to show the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(DomainError):
    """The token is missing, invalid or expired, or its account no longer exists."""

    def __init__(self, detail: str = "Could not validate credentials") -> None:
        super().__init__(detail)


class NotFound(DomainError):
    """No such resource, or not one the viewer may see (someone else's draft)."""


class Forbidden(DomainError):
    """It exists and the viewer sees it, but it is not theirs to change."""


class Conflict(DomainError):
    """It conflicts with the current state (a taken email, a second vote)."""


class InvalidParameter(DomainError):
    """A well-formed parameter that names nothing usable (a cursor post that is gone)."""

    def __init__(self, location: tuple[str, str], detail: str) -> None:
        super().__init__(detail)
        self.location = location
