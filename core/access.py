"""Who may use the server: logins (given, read from a file, or made once and kept private) and which requests come
from the machine itself."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

GENERATED_USER = "studio"
LOGIN_FILE = "login.txt"  # in the cache folder: "user:password", readable by the owner only
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
# Headers a reverse proxy (or Gradio's share tunnel) adds for a visitor who is not on this machine.
FORWARDING_HEADERS = ("x-forwarded-for", "x-forwarded-host", "forwarded", "x-real-ip")

Credentials = list[tuple[str, str]]


@dataclass(frozen=True)
class LoginPlan:
    """What the server requires: `credentials` (None: no login), and what to tell the owner at start."""

    credentials: Credentials | None
    announcement: str = ""  # printed once at start (never logged): where the login is, or that there is none
    banner: str = ""  # shown at the top of every page


def parse_credentials(text: str, source: str) -> Credentials:
    """A1111's `user:password` pairs, separated by commas or new lines; an empty user or password is refused."""
    pairs = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep:
            raise UserError(f"{source} expects user:password pairs separated by commas; one entry has no ':'.")
        if not user.strip() or not password:
            raise UserError(f"{source}: every login needs a user name and a password; an empty one is refused.")
        pairs.append((user.strip(), password))
    if not pairs:
        raise UserError(f"{source} holds no user:password pair.")
    return pairs


def read_credentials_file(path: Path) -> Credentials:
    """A1111's --gradio-auth-path: a file of user:password pairs (commas or one per line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot read the login file {path}: {exc.strerror or exc}.") from exc
    return parse_credentials(text, f"The login file {path}")


def generated_login(cache_dir: Path) -> tuple[Credentials, Path, bool]:
    """The server's own login, kept in the cache folder (mode 0600); made with a random password the first time.
    Returns (credentials, file, created now)."""
    path = Path(cache_dir) / LOGIN_FILE
    if path.is_file():
        os.chmod(path, 0o600)  # whatever a copy or an editor did to it
        return read_credentials_file(path), path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    # O_EXCL: never through a file (or link) someone else put there; the mode is set as the file is made.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write(f"{GENERATED_USER}:{password}\n")
    return [(GENERATED_USER, password)], path, True


def plan_login(
    *,
    reachable_by_others: bool,
    auth: str | None,
    auth_path: Path | None,
    insecure_no_auth: bool,
    cache_dir: Path,
) -> LoginPlan:
    """The login the flags ask for. An address others can reach (--listen, --share) always gets one unless
    --insecure-no-auth says otherwise; a local-only server needs none unless one is given."""
    given: Credentials = []
    if auth is not None:
        given += parse_credentials(auth, "--gradio-auth")
    if auth_path is not None:
        given += read_credentials_file(auth_path)
    if given:
        users = ", ".join(sorted({user for user, _ in given}))
        return LoginPlan(given, f"Login required (users: {users}).")
    if not reachable_by_others:
        return LoginPlan(None)
    if insecure_no_auth:
        warning = (
            "WARNING: serving to the network WITHOUT A LOGIN (--insecure-no-auth): anyone who can reach this "
            "address can use the studio and its GPU."
        )
        return LoginPlan(None, warning, warning)
    credentials, path, created = generated_login(cache_dir)
    user, password = credentials[0]
    if created:
        announcement = (
            f"This server can be reached by others, so it needs a login. Made one for you:\n"
            f"    user: {user}\n    password: {password}\n"
            f"It is kept in {path} (readable only by you); --gradio-auth sets your own."
        )
    else:
        announcement = f"Login required: user '{user}', password in {path} (readable only by you)."
    return LoginPlan(credentials, announcement)


def is_local_request(client_host: str | None, headers: Mapping[str, str]) -> bool:
    """True for a browser on this machine talking to it directly. Visitors through the share tunnel or a reverse
    proxy also connect from 127.0.0.1, so the Host they asked for must be a loopback name too and no forwarding
    header may be present (this also refuses DNS-rebinding pages, which arrive with their own host name)."""
    if not client_host or not _is_loopback(client_host):
        return False
    lowered = {key.lower(): value for key, value in headers.items()}
    if any(name in lowered for name in FORWARDING_HEADERS):
        return False
    host = lowered.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOOPBACK_NAMES


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
