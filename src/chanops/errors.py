"""Every way chanops can fail, in one tree.

    ChanopsError
    ├── ConfigError                 bad flags, environment or chanops.yaml
    ├── ManifestError               a manifest that cannot be loaded (carries a Diagnostic)
    ├── SecretResolutionError       a secretRef that does not resolve (names the ref, never a value)
    ├── PlatformError               anything the platform client raises
    │   ├── TransportError          timeout, refused or reset connection (retried)
    │   │   └── PlatformUnavailable the platform stopped answering: fail fast, no retries
    │   │       └── ReauthorizationRequired  the refresh token was refused: run chanops login
    │   ├── AuthError           the OAuth token endpoint refused the client or gave no token
    │   └── APIError                the platform answered with an error status
    │       ├── Unauthorized        401
    │       ├── Forbidden           403
    │       ├── NotFound            404
    │       ├── Conflict            409 (e.g. connection_active)
    │       ├── PreconditionFailed  412 lost update (If-Match)
    │       ├── UnprocessableEntity 422, one subclass per error code:
    │       │   ├── DriverNotInstalled, InvalidCredentials, SettingsAfterCreate,
    │       │   ├── NotCreatable, ImmutableField, LockedSetting, UnknownValue
    │       ├── RateLimited         429 (retry_after)
    │       └── ServerError         5xx
    ├── StoreError                  the state store
    │   └── StoreLocked             another process holds the store (names its pid)
    ├── PlanError                   a plan that cannot be made or executed
    └── SourceError                 the git source cannot fetch or check out (last good kept)

Only `chanops.platform.client` knows httpx exceptions and HTTP status codes; it
translates them into this tree at one edge.
"""

from __future__ import annotations


class ChanopsError(Exception):
    """Base of every error chanops raises on purpose."""


class ConfigError(ChanopsError):
    pass


class ManifestError(ChanopsError):
    pass


class SecretResolutionError(ChanopsError):
    pass


class PlatformError(ChanopsError):
    pass


class TransportError(PlatformError):
    pass


class PlatformUnavailable(TransportError):
    """Several calls in a row got no answer: the rest of this reconcile is not attempted.

    Raised instead of retrying each remaining call, so an outage costs one event and one
    backoff for the whole reconcile, not full retries for every connection.
    """


class ReauthorizationRequired(PlatformUnavailable):
    """The token endpoint refused the refresh token (`invalid_grant`: revoked, expired).

    Nothing but a person running `chanops login` cures it, so it is an outage of the
    whole platform, not a failure of the call that met it.
    """


class AuthError(PlatformError):
    """The OAuth token endpoint refused the client (`invalid_client`: a wrong client
    secret, an unknown client id) or answered something that is not a token."""


class APIError(PlatformError):
    """The platform answered `{error, message, field?}` with an error status."""

    status: int = 0
    code: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.field = field

    @property
    def retryable(self) -> bool:
        return False

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"


class Forbidden(APIError):
    status = 403
    code = "forbidden"


class NotFound(APIError):
    status = 404
    code = "not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class PreconditionFailed(APIError):
    status = 412
    code = "precondition_failed"


class UnprocessableEntity(APIError):
    status = 422
    code = "unprocessable_entity"


class DriverNotInstalled(UnprocessableEntity):
    code = "driver_not_installed"


class InvalidCredentials(UnprocessableEntity):
    code = "invalid_credentials"


class SettingsAfterCreate(UnprocessableEntity):
    code = "settings_after_create"


class NotCreatable(UnprocessableEntity):
    code = "not_creatable"


class ImmutableField(UnprocessableEntity):
    code = "immutable_field"


class LockedSetting(UnprocessableEntity):
    code = "locked_setting"


class UnknownValue(UnprocessableEntity):
    code = "unknown_value"


class RateLimited(APIError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class ServerError(APIError):
    status = 500
    code = "server_error"

    @property
    def retryable(self) -> bool:
        return True


class StoreError(ChanopsError):
    pass


class StoreLocked(StoreError):
    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"state store {path} is locked by {holder}; is another chanops running?")
        self.path = path
        self.pid = pid


class PlanError(ChanopsError):
    pass


class SourceError(ChanopsError):
    """The manifests source failed (git fetch/checkout); the last good checkout stays in use."""
