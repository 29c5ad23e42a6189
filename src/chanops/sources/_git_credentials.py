"""What a git URL or deploy key lends the source, kept out of argv, logs and errors.

Credentials embedded in an https URL (`https://user:token@host/...`) never appear in
logs, errors or the argv of any git process (any local user can read an argv in /proc):
git is given the URL without them and gets them from CREDENTIAL_HELPER, which reads
them from the fetch's environment. An ssh deploy key is named in GIT_SSH_COMMAND.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from chanops.errors import SourceError

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")

# Only the fetch's environment carries these, never an argv. Not CHANOPS_*: that
# prefix is the operator's configuration.
_USERNAME_ENV = "_CHANOPS_GIT_USERNAME"
_PASSWORD_ENV = "_CHANOPS_GIT_PASSWORD"  # noqa: S105 (a variable name)
_PROTOCOL_ENV = "_CHANOPS_GIT_PROTOCOL"
_HOST_ENV = "_CHANOPS_GIT_HOST"
# A git credential helper (git runs `!...` through sh, appending the operation). It
# answers `get` from the environment, and only for the URL's own protocol and host: a
# redirect to another host gets nothing. `printf` is a shell builtin, so the values are
# never in an argv either. `store` and `erase` are ignored.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r line && test -n "$line"; do case $line in '
    f'"protocol=${_PROTOCOL_ENV}") p=1 ;; "host=${_HOST_ENV}") h=1 ;; esac; done; '
    'test "$p$h" = 11 || return 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_ENV}" "${_PASSWORD_ENV}"; }}; f'
)


def redact_url(text: str) -> str:
    """Replace `user:password@` (or a bare token as user) in every URL inside `text`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def ssh_command(key: Path, known_hosts: Path) -> str:
    """The GIT_SSH_COMMAND for a deploy key.

    git runs this through a shell, hence the quoting. BatchMode: a passphrase or host-key
    prompt fails instead of hanging the daemon; accept-new: trust a host on first use but
    refuse a changed key; our own known_hosts file because $HOME may be read-only.
    """
    return " ".join(
        [
            "ssh",
            "-i",
            shlex.quote(str(key)),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "UserKnownHostsFile=" + shlex.quote(str(known_hosts)),
        ]
    )


@dataclass(frozen=True, slots=True)
class HttpCredentials:
    """The `user:password@` of an http(s) URL, percent-decoded as git would."""

    protocol: str
    host: str  # host[:port] exactly as in the URL: what git tells the helper
    username: str
    password: str

    def env(self) -> dict[str, str]:
        """The variables CREDENTIAL_HELPER answers from."""
        return {
            _PROTOCOL_ENV: self.protocol,
            _HOST_ENV: self.host,
            _USERNAME_ENV: self.username,
            _PASSWORD_ENV: self.password,
        }


def split_credentials(url: str) -> tuple[str, HttpCredentials | None]:
    """(the URL without userinfo, its credentials) for http(s); other URLs unchanged.

    ssh's `git@host` is a login name, not a secret, and ssh needs it: left in place.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SourceError(f"invalid git URL {redact_url(url)!r}: {exc}") from None
    protocol = parts.scheme.lower()
    if protocol not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    credentials = HttpCredentials(protocol, host, unquote(username), unquote(password))
    # The helper speaks a line protocol: a newline would let the URL inject attributes.
    if any(c in "\r\n\0" for c in credentials.username + credentials.password):
        raise SourceError(f"credentials in git URL {redact_url(url)!r} hold a control character")
    return urlunsplit(parts._replace(netloc=host)), credentials
