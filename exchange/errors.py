"""Domain errors, grouped by what the runtime does with them; none carries an HTTP status.

The TAXII layer maps them to error bodies in one middleware (exchange/taxii/errors.py).
"""


class ExchangeError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(ExchangeError):
    """The configuration is unusable: fail at startup, naming the key."""


class InvalidObject(ExchangeError):
    """One object is rejected; the rest of its batch goes on."""


class InvalidRequest(ExchangeError):
    """The request is malformed (bad JSON, bad filter, bad cursor)."""


class PayloadTooLarge(ExchangeError):
    """The body exceeds the advertised max_content_length."""


class Unauthenticated(ExchangeError):
    """No credentials, or credentials that do not match an account."""


class Forbidden(ExchangeError):
    """The account is known but may not do this."""


class NotFound(ExchangeError):
    """The resource does not exist or is invisible to the account."""


class NotAcceptable(ExchangeError):
    """The client accepts no media type the hub can produce."""


class UnsupportedMediaType(ExchangeError):
    """The request body has a media type the hub cannot take."""


class TransientError(ExchangeError):
    """Worth retrying with backoff (a peer's 5xx, a locked database)."""
