"""The operator's error tree: every failure of the API server or a node, classified.

Adapters (k8s.py, nodeclient.py) raise only these; `retriable` says whether trying
again later can help, and their callers decide with it (the node loop tries again on
its next pass, the policy propagation retries a push).
"""

from __future__ import annotations

from typing import ClassVar


class OperatorError(Exception):
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class KubeError(OperatorError):
    """The API server refused or failed a request."""


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    """A precondition or resourceVersion did not match: re-read and decide again."""

    retriable = True


class Invalid(KubeError):
    """The object was rejected as invalid (422): a bug in what we render."""


class Unavailable(KubeError, ConnectionError):
    """Network trouble, timeouts, 429 and 5xx: retry later."""

    retriable = True


class NodeUnreachable(OperatorError, ConnectionError):
    """A node's admin API did not answer (connection refused, timeout)."""

    retriable = True


class NodeRefused(OperatorError):
    """A node answered with an error body."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message, status=status)
        self.code = code
