"""Who may call the API. On the loopback interface, this machine's users; anywhere else, only
who holds the token: a server that runs models on uploads is not for the whole network.

- `check_exposure(host, token)`: a host other than loopback without a token is refused before
  anything listens (as Jupyter refuses to listen in the open without a token or password).
- `BearerToken`: with a token, every `/api` request must carry `Authorization: Bearer TOKEN`,
  else 401. The pages, their scripts and `/docs` stay readable: they hold no data, and the
  lab page sends the token it was opened with (`http://HOST:PORT/#token=TOKEN`; a fragment
  never reaches the server's or a proxy's log).
"""

from __future__ import annotations

import hmac
import ipaddress

from cnnlab.errors import CnnlabError
from cnnlab.serve.answers import answer

MIN_TOKEN = 16  # characters: `secrets.token_urlsafe()` gives 43; 16 random ones are beyond guessing over HTTP
TOKEN_ENV = "CNNLAB_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token, or with one too short to be a secret."""
    if token is not None and len(token) < MIN_TOKEN:
        raise CnnlabError(
            f"the token is {len(token)} characters long; use at least {MIN_TOKEN} random ones, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe())'."
        )
    if token is None and not is_loopback(host):
        raise CnnlabError(
            f"--host {host} opens the server to the network, which then runs models on anyone's uploads; "
            f"give it a token with --token or {TOKEN_ENV} (clients send 'Authorization: Bearer TOKEN'), or keep 127.0.0.1."
        )


class BearerToken:
    """ASGI middleware: /api requests without `Authorization: Bearer <token>` get 401."""

    def __init__(self, app, token: str) -> None:  # noqa: ANN001
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):  # constant time: no guessing the token byte by byte
                await answer(send, 401, "this server needs a token: send the header 'Authorization: Bearer TOKEN'.",
                             [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
