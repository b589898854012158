"""One error tree, split by what the caller should do about it.

Venue and library errors are mapped at the adapter boundary and chained
(``raise VenueTransientError(...) from exc``).
"""


class HftError(Exception):
    """Base of every error the framework raises on purpose."""


class VenueError(HftError):
    """Something a venue said or failed to say."""


class VenueTransientError(VenueError):
    """Timeout, rate limit, venue unavailable: safe to retry an idempotent call."""


class VenuePermanentError(VenueError):
    """Authentication, invalid order, insufficient funds, not found: retrying will not help."""


class AuthenticationError(VenuePermanentError):
    pass


class OrderNotFound(VenuePermanentError):
    pass


class UnknownTypeError(HftError, LookupError):
    """A venue or strategy ``type`` that is neither registered nor an importable path."""
