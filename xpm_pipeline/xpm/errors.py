"""Typed failures of XPM calls. Messages are one line, say what to do, and never carry a credential."""

from __future__ import annotations


class XPMError(Exception):
    """Base for everything the XPM client raises."""


class XPMResponseError(XPMError):
    """XPM answered ``<Status>ERROR</Status>`` (with HTTP 200 or 500), or a 4xx with a reason."""

    def __init__(self, message: str, *, status_code: int, path: str, description: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.path = path
        self.description = description


class XPMNotFound(XPMResponseError):
    """XPM says the thing does not exist ("Unable to find ..."), e.g. a deleted job."""


class XPMServerError(XPMError):
    """5xx after the retries allowed for this call were used up."""

    def __init__(self, message: str, *, status_code: int, path: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.path = path


class XPMUnclearOutcome(XPMError):
    """A non-idempotent write may or may not have happened (timeout after send, reset, 5xx).

    The caller must read XPM back before sending it again.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class XPMUnavailable(XPMError):
    """XPM could not be reached (connect errors, timeouts on reads) after retries."""


class XPMRateLimited(XPMError):
    """A 429 whose wait is longer than this call may sleep (e.g. the daily limit)."""

    def __init__(self, message: str, *, retry_after: float, problem: str | None, path: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.problem = problem
        self.path = path


class XPMAuthError(XPMError):
    """XPM refused the credentials even after a refresh (revoked consent, wrong tenant)."""


class XPMParseError(XPMError):
    """The response is not the XML XPM sends: malformed, truncated, oversized, or hostile."""


class XPMIncompleteAnswer(XPMParseError):
    """A well-formed OK answer without the element the call returns (``<Jobs>``, ``<Job>``): never read
    as an empty list, which would look like every row was deleted."""
