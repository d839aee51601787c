"""The sandbox's one rule for XPM error statuses (see the package docstring, "Errors").

XPM answers errors with ``<Status>ERROR</Status>`` under several HTTP statuses and documents no rule,
so the sandbox picks one and keeps to it everywhere:

* ``BadRequest`` (400): the request itself is malformed: unparseable or DOCTYPE-carrying body, wrong
  root element, a required element missing, a value in the wrong format, a bad/missing ``from``/``to``
  or a range over 365 days, a bad ``pageSize``/``pageToken``.
* ``NotFound`` (**200**): an ID in the path or body names nothing (``Unable to find job J009999``),
  for reads and writes alike. A client that only checks the HTTP status misses these, as with XPM.
* ``Refused`` (500): the request is understood but breaks a business rule (unknown job state code,
  End before Start, a task that is not on the job).
* ``Conflict`` (409): ``client.api/add``/``update`` would give two live clients the same name.
"""

from __future__ import annotations


class XpmError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(XpmError):
    status = 400


class NotFound(XpmError):
    status = 200


class Refused(XpmError):
    status = 500


class Conflict(XpmError):
    status = 409


class MethodNotAllowed(XpmError):
    status = 405


class UnknownEndpoint(XpmError):
    status = 404
