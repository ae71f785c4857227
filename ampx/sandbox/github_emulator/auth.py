"""Credential checks modelled on GitHub: app JWTs, installation and personal tokens.

Tokens are stored only as SHA-256 digests and are never logged; error bodies
use GitHub's wording so clients' error handling is exercised realistically.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import time
from dataclasses import dataclass

import jwt

from .state import App, Store, Token

DOCS = "https://docs.github.com/rest"
#: GitHub tolerates this much clock drift on ``iat``.
CLOCK_SKEW = 60
MAX_JWT_LIFETIME = 600


class ApiError(Exception):
    """An error response in GitHub's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        documentation_url: str = DOCS,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict:
        data: dict = {"message": self.message, "documentation_url": self.documentation_url}
        if self.errors is not None:
            data["errors"] = self.errors
        data["status"] = str(self.status)
        return data


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials", documentation_url=DOCS)


def requires_authentication() -> ApiError:
    return ApiError(401, "Requires authentication", documentation_url=DOCS)


def not_found() -> ApiError:
    return ApiError(404, "Not Found", documentation_url=DOCS)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    """A token shaped like GitHub's: prefix + 36 base62 characters."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(36))


def new_stateless_installation_token(app_id: int) -> str:
    """GitHub's stateless installation-token format of 2026: ``ghs_<APPID>_<JWT>`` (not 40
    characters long; '_', '-' and '.' inside). The JWT part is opaque to its holder."""
    def seg(n: int) -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")

    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').decode().rstrip("=")
    return f"ghs_{app_id}_{header}.{seg(48)}.{seg(64)}"


@dataclass
class Principal:
    """Who is calling: an app (JWT), a token holder, or nobody."""

    kind: str  # "app" | "token" | "anonymous"
    app: App | None = None
    token: Token | None = None

    @property
    def rate_key(self) -> str | None:
        if self.kind == "app" and self.app:
            return f"app ID {self.app.id}"
        if self.token is not None:
            return self.token.rate_key
        return None


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """(scheme, credential) of an ``Authorization`` header, scheme lower-cased."""
    if not header:
        return None
    parts = header.strip().split(None, 1)
    if len(parts) != 2:
        return ("invalid", "")
    return parts[0].lower(), parts[1].strip()


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and not value.startswith(("ghs_", "ghp_", "gho_", "ghu_", "github_pat_"))


def verify_app_jwt(store: Store, value: str) -> App:
    """Check an app JWT the way GitHub does (RS256, iss = app id, short lifetime)."""
    try:
        unverified = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded") from None
    iss = unverified.get("iss")
    with store.lock:
        app = None
        if iss is not None:
            app = store.apps.get(int(iss)) if str(iss).isdigit() else next(
                (a for a in store.apps.values() if a.client_id == iss), None
            )
    if app is None:
        raise ApiError(401, "A JSON web token could not be decoded")
    try:
        claims = jwt.decode(
            value,
            app.public_key,
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"], "verify_iat": False},
            leeway=CLOCK_SKEW,
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires") from None
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded") from None
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or iat > now + CLOCK_SKEW:
        raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
    if not isinstance(exp, (int, float)) or exp <= now:
        raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
    if exp - iat > MAX_JWT_LIFETIME or exp > now + MAX_JWT_LIFETIME + CLOCK_SKEW:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
    return app


def lookup_token(store: Store, value: str) -> Token:
    with store.lock:
        token = store.tokens.get(digest(value))
    if token is None or token.expired():
        raise bad_credentials()
    return token


def authenticate(store: Store, header: str | None, *, jwt_endpoint: bool) -> Principal:
    """Resolve an ``Authorization`` header. Raises :class:`ApiError` on bad input.

    App endpoints accept only an app JWT; everything else only tokens. Like
    GitHub, a JWT on a token endpoint is "Bad credentials" and a token on an
    app endpoint is a JWT decoding error.
    """
    parsed = parse_authorization(header)
    if parsed is None:
        return Principal("anonymous")
    scheme, cred = parsed
    if scheme == "basic":
        cred = basic_credentials(header) or ""
        scheme = "token"
    if scheme not in ("token", "bearer"):
        raise bad_credentials()
    if jwt_endpoint:
        if not (scheme == "bearer" and looks_like_jwt(cred)):
            raise ApiError(401, "A JSON web token could not be decoded")
        return Principal("app", app=verify_app_jwt(store, cred))
    if looks_like_jwt(cred):
        raise bad_credentials()
    return Principal("token", token=lookup_token(store, cred))


def basic_credentials(header: str | None) -> str | None:
    """Token carried by git's HTTP Basic auth (password, or username if no password)."""
    parsed = parse_authorization(header)
    if parsed is None or parsed[0] != "basic":
        return None
    try:
        user, _, password = base64.b64decode(parsed[1]).decode().partition(":")
    except Exception:
        return None
    return password if password and password != "x-oauth-basic" else (user or None)
