"""`chanops login`: authorise chanops on a Core1 instance (OAuth 2.0 authorization code).

A person runs it once (and again after `auth.reauthorization_required`):

1. the client credentials are checked first, so a wrong client secret or an unknown
   client id is one clear line, not a browser page and a wait;
2. a redirect listener starts on 127.0.0.1 (a random port unless `--redirect-port`);
3. the authorize URL (with `state` and a PKCE S256 challenge) is printed on a line of
   its own on stdout, and opened in a browser unless `--no-browser`;
4. the redirect must carry the same `state` and a code (a denial or a forged redirect
   ends the login), which is exchanged for the token set with the PKCE verifier;
5. the token set goes into the state store (`--state`), where the daemon, running or
   not, picks it up. Exit 0; any failure is one line and exit 1.

No token or secret is ever printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import click

if TYPE_CHECKING:
    from chanops.config import Settings
    from chanops.platform.auth import TokenSet

DEFAULT_TIMEOUT = "5m"
CALLBACK_PATH = "/callback"
READ_TIMEOUT_S = 10.0  # for the browser to send its request line and headers
VERDICT_TIMEOUT_S = 60.0  # the browser's page waits this long for the code exchange
DONE_PAGE = "chanops: authorised. You can close this tab."
FAILED_PAGE = "chanops: the login did not complete; the terminal says why."
MAX_LINE = 8192


class LoginError(Exception):
    """One line for the user: why the login did not complete."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """What the redirect to the listener carried."""

    params: dict[str, str]


def code_from(params: dict[str, str], expected_state: str) -> str:
    """The authorization code of a redirect, or LoginError saying why there is none (pure)."""
    from chanops.platform.answers import snippet

    if params.get("state") != expected_state:
        raise LoginError(
            "the redirect's state does not match the one chanops sent: a stale or forged "
            "redirect; the login was not completed (run chanops login again)"
        )
    error = params.get("error")
    if error:
        described = params.get("error_description")
        said = f": {snippet(described, ())}" if described else ""
        if error == "access_denied":
            return _raise(f"the authorization was denied on the platform (access_denied{said})")
        return _raise(f"the platform refused the authorization ({snippet(error, (), 64)}{said})")
    code = params.get("code")
    if not code:
        raise LoginError("the redirect carried neither a code nor an error")
    return code


def _raise(message: str) -> str:
    raise LoginError(message)


class RedirectListener:
    """A one-shot HTTP listener on 127.0.0.1 for the authorization redirect. The page
    the browser gets waits for the login's verdict (`conclude`): "authorised" only once
    the state matched, the code was exchanged and the token set stored."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.redirect: asyncio.Future[Redirect] | None = None
        self.verdict: asyncio.Future[bool] | None = None
        self._server: asyncio.Server | None = None
        self._answering: set[asyncio.Task[Any]] = set()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    async def start(self) -> None:
        self.redirect = asyncio.get_running_loop().create_future()
        self.verdict = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, limit=MAX_LINE
            )
        except OSError as exc:
            raise LoginError(
                f"cannot listen on 127.0.0.1:{self.port} for the redirect: {exc.strerror}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]

    def conclude(self, ok: bool) -> None:
        """The login's outcome, for the page of the redirect being answered."""
        if self.verdict is not None and not self.verdict.done():
            self.verdict.set_result(ok)

    async def close(self) -> None:
        self.conclude(False)
        if self._answering:  # the browser gets its page before the process ends
            await asyncio.wait(self._answering, timeout=READ_TIMEOUT_S)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target = await asyncio.wait_for(_request_target(reader), READ_TIMEOUT_S)
            parts = urlsplit(target or "")
            if parts.path != CALLBACK_PATH:
                await _answer(writer, 404, "Not found.")
                return
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            if self.redirect is None or self.redirect.done() or self.verdict is None:
                await _answer(writer, 400, FAILED_PAGE)  # a second redirect: one login only
                return
            task = asyncio.current_task()
            assert task is not None
            self._answering.add(task)
            self.redirect.set_result(Redirect(params))
            done = await asyncio.wait_for(asyncio.shield(self.verdict), VERDICT_TIMEOUT_S)
            await _answer(writer, 200 if done else 400, DONE_PAGE if done else FAILED_PAGE)
        except (TimeoutError, ValueError, OSError, asyncio.IncompleteReadError):
            pass  # a probe or a half-open connection: wait for the real redirect
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _request_target(reader: asyncio.StreamReader) -> str | None:
    line = (await reader.readline()).decode("latin-1")
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # the headers: nothing in them matters here
    fields = line.split()
    if len(fields) != 3 or fields[0] != "GET":  # noqa: PLR2004 (method, target, version)
        return None
    return fields[1]


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()


@dataclass(frozen=True, slots=True)
class LoginOptions:
    redirect_port: int
    browser: bool
    timeout_s: float


async def login(settings: Settings, options: LoginOptions) -> tuple[TokenSet, str]:
    """Run the flow; the token set as stored, and where. LoginError/ChanopsError on failure."""
    from authlib.common.security import generate_token

    from chanops.platform.auth import authorize_url, oauth_client, token_call, token_set_from

    platform = settings.platform
    url = platform.url.rstrip("/")
    client_id, secret = _client(settings)
    listener = RedirectListener(options.redirect_port)
    await listener.start()
    oauth = oauth_client(url, client_id, secret, redirect_uri=listener.redirect_uri)
    try:
        await _check_client(oauth, client_id, secret)
        verifier = generate_token(64)
        uri, state = oauth.create_authorization_url(authorize_url(url), code_verifier=verifier)
        click.echo(uri)
        sys.stdout.flush()
        if options.browser:
            _open_browser(uri)
        code = code_from(await _wait(listener, options.timeout_s), state)
        answer = await token_call(
            oauth.fetch_token(
                code=code,
                code_verifier=verifier,
                redirect_uri=listener.redirect_uri,
                grant_type="authorization_code",
            ),
            client_id=client_id,
            secrets=(secret, code, verifier),
            refresh=False,
        )
        tokens = token_set_from(answer, platform_url=url, client_id=client_id, now=time.time())
        stored = await asyncio.to_thread(_store, settings, tokens)
        listener.conclude(True)
    finally:
        await listener.close()  # a failure: the browser's page says to read the terminal
        await oauth.aclose()
    return stored


def _client(settings: Settings) -> tuple[str, str]:
    platform = settings.platform
    if platform.is_local:
        raise LoginError(
            "chanops login needs the platform's URL (--platform https://<workspace>"
            ".actindo.com, or CHANOPS_PLATFORM_URL): the embedded emulator takes no login"
        )
    if platform.client_id is None or platform.client_secret is None:
        raise LoginError(
            "chanops login needs --client-id and --client-secret-file (CHANOPS_CLIENT_ID, "
            "CHANOPS_CLIENT_SECRET_FILE): the app registration's client id and secret"
        )
    return platform.client_id, platform.client_secret


async def _check_client(oauth: Any, client_id: str, secret: str) -> None:
    """Ask the token endpoint to refresh a token that does not exist: it checks the
    client's credentials first (RFC 6749 section 5.2), so `invalid_client` means a wrong
    secret or an unknown client id, while `invalid_grant` is the expected answer."""
    from authlib.integrations.base_client import OAuthError

    from chanops.platform.auth import token_call

    async def probe() -> None:
        try:
            await oauth.refresh_token(
                oauth.metadata["token_endpoint"],
                refresh_token="chanops-login-check",  # noqa: S106 (a probe, not a token)
            )
        except OAuthError as exc:
            if exc.error not in ("invalid_grant", "invalid_request"):
                raise  # token_call says what it means
            # The client authenticated; only the made-up grant was refused.

    await token_call(probe(), client_id=client_id, secrets=(secret,), refresh=False)


async def _wait(listener: RedirectListener, timeout_s: float) -> dict[str, str]:
    assert listener.redirect is not None
    try:
        redirect = await asyncio.wait_for(listener.redirect, timeout_s)
    except TimeoutError:
        raise LoginError(
            f"no redirect reached {listener.redirect_uri} within {timeout_s:g}s: open the "
            "URL above in a browser on this machine (or pass --timeout)"
        ) from None
    return redirect.params


def _open_browser(uri: str) -> None:
    import webbrowser

    with contextlib.suppress(Exception):  # no browser here: the printed URL is enough
        webbrowser.open(uri, new=1)


def _store(settings: Settings, tokens: TokenSet) -> tuple[TokenSet, str]:
    """Save into the state store, beside a daemon holding its writer lock if one runs."""
    from chanops.commands.platform import StateTokens
    from chanops.errors import StoreLocked
    from chanops.state.factory import open_store

    try:
        store = open_store(settings.state_location)  # creates and migrates a new store
    except StoreLocked:
        store = open_store(settings.state_location, readonly=True)  # a daemon migrated it
    try:
        # `location`: a path, or the DSN without its password.
        return StateTokens(store).save(tokens, login=True), store.location
    finally:
        store.close()


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from chanops.manifests.durations import parse_flag_duration

    try:
        seconds = parse_flag_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0s, e.g. 5m")
    return seconds


@click.command(name="login")
@click.option(
    "--platform", metavar="URL", default=None, help="Core1 URL [env CHANOPS_PLATFORM_URL]."
)
@click.option(
    "--client-id",
    metavar="ID",
    default=None,
    help="App registration's client id [env CHANOPS_CLIENT_ID].",
)
@click.option(
    "--client-secret-file",
    metavar="FILE",
    default=None,
    help="File holding the client secret [env CHANOPS_CLIENT_SECRET_FILE].",
)
@click.option(
    "--state",
    metavar="PATH",
    default=None,
    help="State store the token set goes into [env CHANOPS_STATE; default "
    ".chanops/state.db beside the manifests root].",
)
@click.option("--manifests", metavar="DIR", default=None, hidden=True)
@click.option("--config", "config_file", metavar="FILE", default=None, help="Settings file.")
@click.option(
    "--redirect-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of the redirect listener on 127.0.0.1 [default: a free one].",
)
@click.option("--no-browser", is_flag=True, help="Only print the URL; open no browser.")
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="How long to wait for the redirect.",
)
def command(
    *,
    platform: str | None,
    client_id: str | None,
    client_secret_file: str | None,
    state: str | None,
    manifests: str | None,
    config_file: str | None,
    redirect_port: int,
    no_browser: bool,
    timeout: float,
) -> None:
    """Authorise chanops on a Core1 instance and store the token set in --state."""
    from chanops.commands.session import cli_logging, cli_settings
    from chanops.errors import ChanopsError

    settings = cli_settings(  # a bad option is one line and exit 1, like any failure
        manifests=manifests,
        platform=platform,
        token=None,
        token_file=None,
        state=state,
        secrets_dirs=(),
        config_file=config_file,
        client_id=client_id,
        client_secret_file=client_secret_file,
    )
    cli_logging("error")
    options = LoginOptions(redirect_port, browser=not no_browser, timeout_s=timeout)
    try:
        tokens, where = asyncio.run(login(settings, options))
    except (LoginError, ChanopsError) as exc:
        raise click.ClickException(str(exc)) from None
    lifetime = round(tokens.expires_at - tokens.issued_at)
    click.echo(
        f"Logged in as client {tokens.client_id} at {tokens.platform_url}: token set stored "
        f"in {where} (access token valid {lifetime}s, refreshed automatically)",
        err=True,
    )
