"""Delivering one notice: an HTTPS POST (Slack, Teams, the signed webhook) or SMTP.

`Transport.send` makes one attempt and raises `DeliveryError` with a message that
never holds the URL (for Slack and Teams the URL *is* the credential) or a password.
The generic webhook is signed: `X-Chanops-Signature: sha256=<hex>`, the HMAC-SHA256 of
the exact request body under the key in `secretFile` (docs/notifications.md shows how
to verify it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from typing import Any

import httpx

from chanops import __version__
from chanops.notify._messages import email_message, slack_payload, teams_payload, webhook_body
from chanops.notify._notices import Notice
from chanops.notify.config import Credentials, ProviderConfig

__all__ = ["SIGNATURE_HEADER", "DeliveryError", "Transport", "sign"]

SIGNATURE_HEADER = "X-Chanops-Signature"
_RETRYABLE_4XX = frozenset({httpx.codes.REQUEST_TIMEOUT, httpx.codes.TOO_MANY_REQUESTS})
_USER_AGENT = f"chanops/{__version__} (notifications)"


class DeliveryError(Exception):
    """One attempt failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body` under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Transport:
    """One provider's delivery, used by one thread (its own HTTP client)."""

    def __init__(self, provider: ProviderConfig, credentials: Credentials) -> None:
        self.provider = provider
        self._credentials = credentials
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def send(self, notice: Notice) -> None:
        try:
            if self.provider.kind == "email":
                self._send_email(notice)
            else:
                self._post(notice)
        except DeliveryError:
            raise
        except (httpx.HTTPError, OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            raise DeliveryError(self._describe(exc)) from None

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, httpx.HTTPError) else ""
        text = text or type(exc).__name__
        for value in self._credentials.values:
            text = text.replace(value, "(sensitive value)")
        return text

    # -- HTTP -------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                timeout=self.provider.timeout_s,
                headers={"User-Agent": _USER_AGENT},
                follow_redirects=False,
            )
        return self._http

    def _post(self, notice: Notice) -> None:
        assert self._credentials.url is not None
        headers = {"Content-Type": "application/json"}
        if self.provider.kind == "webhook":
            body = webhook_body(notice)
            assert self._credentials.secret is not None
            headers[SIGNATURE_HEADER] = sign(self._credentials.secret, body)
        else:
            payload: Any = (
                slack_payload(notice) if self.provider.kind == "slack" else teams_payload(notice)
            )
            body = json.dumps(payload, separators=(",", ":")).encode()
        response = self._client().post(self._credentials.url, content=body, headers=headers)
        status = response.status_code
        if not httpx.codes.is_success(status):
            # 4xx other than 408/429 will not get better by asking again.
            retryable = httpx.codes.is_server_error(status) or status in _RETRYABLE_4XX
            raise DeliveryError(f"HTTP {status}", retryable=retryable)

    # -- SMTP -------------------------------------------------------------------------

    def _send_email(self, notice: Notice) -> None:
        p = self.provider
        assert p.host is not None and p.sender is not None
        context = ssl.create_default_context(
            cafile=str(self._credentials.ca_file) if self._credentials.ca_file else None
        )
        message = email_message(
            notice, sender=p.sender, recipients=p.recipients, prefix=p.subject_prefix
        )
        with smtplib.SMTP(p.host, p.port, timeout=p.timeout_s) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                # Never send the password or the message in clear text.
                raise DeliveryError(
                    f"the SMTP server {p.host}:{p.port} does not offer STARTTLS", retryable=False
                )
            smtp.starttls(context=context)
            smtp.ehlo()
            if p.username:
                smtp.login(p.username, self._credentials.password or "")
            smtp.send_message(message)
