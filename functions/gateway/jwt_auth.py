"""JWT verification for ``"auth": "jwt"`` routes (PyJWT underneath).

Key sources (``auth.jwt`` in flux.json, :class:`functions.shared.manifest.JwtConfig`):

* ``secret_name`` — HS256/384/512 with a shared secret read from the secrets
  store (cached for ``jwks_refresh_s``; PyJWT's minimum key length is enforced,
  so a short secret refuses every token rather than accepting guessable ones);
* ``jwks_url`` — RS*/PS*/ES* with public keys from a JWKS document.

What is checked, in this order, and why:

1. the header's ``alg`` is in the configured allowlist (``none`` never is, and
   the config cannot mix HS* with a JWKS, so an RS256 public key can never be
   used as an HMAC secret — PyJWT refuses that too);
2. JWKS mode needs a ``kid``; it is only ever a dictionary key into the cached
   JWKS — never a path, never a URL — and ``jku``/``x5u``/``jwk`` headers are
   ignored, so a token cannot choose where its key comes from;
3. the key's type (and curve) fits ``alg``, and a key that names its ``alg``
   is used with that one only;
4. signature, then ``exp`` (required), ``nbf`` and ``iat`` with ``leeway_s``,
   ``iss`` and ``aud`` when configured.

The JWKS cache refetches when a token names an unknown ``kid`` or when the
cache is older than ``jwks_refresh_s`` — but at most once per ``jwks_refresh_s``
after a successful fetch (so random kids cannot turn the authorizer into a
request amplifier), and at most once per ``retry_after_failure_s`` after a
failed one. A fetch failure keeps the keys already cached; with an empty cache
every token is refused (fail closed).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import jwt

from functions.gateway.errors import CredentialRejected, JwksUnavailable
from functions.gateway.keys import KEY_PREFIX

if TYPE_CHECKING:
    from functions.shared.manifest import JwtConfig

_log = logging.getLogger("flux.gateway.jwt")

MAX_TOKEN_CHARS = 8192
MAX_JWKS_BYTES = 512 * 1024
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class SecretReader(Protocol):
    """The part of :class:`functions.shared.secrets.SecretsStore` the verifier needs."""

    def get(self, name: str) -> str | None: ...


class JwksFetcher(Protocol):
    """Port: fetch and parse a JWKS document; raise :class:`JwksUnavailable` on any failure."""

    def fetch(self, url: str) -> dict[str, Any]: ...


class HttpxJwksFetcher:
    """Default fetcher: one GET with a short timeout, no redirects, a size cap."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s

    def fetch(self, url: str) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.get(url, timeout=self.timeout_s, follow_redirects=False,
                                 headers={"accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise JwksUnavailable(f"JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JwksUnavailable(f"cannot fetch JWKS from {url}: {exc}") from exc
        if not isinstance(document, dict):
            raise JwksUnavailable(f"JWKS at {url} is not a JSON object")
        return document


class JwksCache:
    """The signing keys of one JWKS URL, by ``kid``, refreshed as the module docstring says."""

    def __init__(self, url: str, fetcher: JwksFetcher, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic, retry_after_failure_s: float = 5.0) -> None:
        self.url = url
        self.fetcher = fetcher
        self.refresh_s = refresh_s
        self.retry_after_failure_s = min(retry_after_failure_s, refresh_s)
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failed = False
        self._lock = threading.Lock()

    def get(self, kid: str) -> dict[str, Any] | None:
        """The JWK for ``kid`` or None (after at most one permitted refetch)."""
        with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.refresh_s
            if (stale or kid not in self._keys) and self._may_fetch(now):
                self._refresh(now)
            return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        if self._attempted_at is None:
            return True
        wait = self.retry_after_failure_s if self._last_failed else self.refresh_s
        return now - self._attempted_at >= wait

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            document = self.fetcher.fetch(self.url)
        except JwksUnavailable as exc:
            self._last_failed = True
            _log.warning("JWKS refresh failed (%s); keeping %d cached keys", exc, len(self._keys))
            return
        self._keys = _signing_keys(document)
        self._fetched_at = now
        self._last_failed = False


def _signing_keys(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys: dict[str, dict[str, Any]] = {}
    for jwk_data in document.get("keys") or []:
        if not isinstance(jwk_data, dict):
            continue
        kid = jwk_data.get("kid")
        if not _valid_kid(kid) or jwk_data.get("kty") not in ("RSA", "EC"):
            continue
        if jwk_data.get("use", "sig") != "sig":
            continue
        keys[kid] = jwk_data
    return keys


def _valid_kid(kid: Any) -> bool:
    """Printable ASCII, no spaces, bounded. It is only a dict key, so nothing stricter is needed."""
    return isinstance(kid, str) and 0 < len(kid) <= 256 and kid.isascii() and kid.isprintable() and " " not in kid


class JwtVerifier:
    def __init__(self, config: JwtConfig, *, secrets: SecretReader | None = None, jwks: JwksCache | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if config.jwks_url and jwks is None:
            raise ValueError("a JwtConfig with jwks_url needs a JwksCache")
        if config.secret_name and secrets is None:
            raise ValueError("a JwtConfig with secret_name needs a secrets store")
        self.config = config
        self.allowed = frozenset(a for a in config.algorithms if a.lower() != "none")
        self.secrets = secrets
        self.jwks = jwks
        self.clock = clock
        self._secret: tuple[str, float] | None = None
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}

    @classmethod
    def from_config(cls, config: JwtConfig, *, secrets: SecretReader | None = None,
                    fetcher: JwksFetcher | None = None, clock: Callable[[], float] = time.monotonic) -> JwtVerifier:
        jwks = None
        if config.jwks_url:
            jwks = JwksCache(config.jwks_url, fetcher or HttpxJwksFetcher(), config.jwks_refresh_s, clock=clock)
        return cls(config, secrets=secrets, jwks=jwks, clock=clock)

    def presented(self, headers: Mapping[str, str]) -> str | None:
        """The raw value of the configured token header (``auth.jwt.header``), or None when it is absent."""
        value = headers.get(self.config.header)
        return value if value else None

    def token_from(self, presented: str) -> str | None:
        """The JWT inside a presented header value: ``<scheme> <jwt>`` (scheme matched case-insensitively),
        or the whole value when ``auth.jwt.scheme`` is ``""``. None when the shape is wrong (a Flux API key
        there is never a JWT)."""
        scheme = self.config.scheme
        if scheme:
            given, _, credential = presented.partition(" ")
            if given.lower() != scheme.lower():
                return None
        else:
            credential = presented
        credential = credential.strip()
        if not credential or credential.startswith(KEY_PREFIX) or " " in credential:
            return None
        return credential

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or :class:`CredentialRejected` naming the failed check (for logs)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise CredentialRejected("token missing or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise CredentialRejected(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.allowed:
            raise CredentialRejected(f"algorithm {alg!r} not allowed")
        key = self._jwks_key(header, alg) if self.jwks is not None else self._secret_key()
        c = self.config
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], issuer=c.issuer, audience=c.audience, leeway=c.leeway_s,
                options={"require": ["exp"], "verify_aud": c.audience is not None,
                         "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise CredentialRejected(f"{type(exc).__name__}: {exc}") from None
        except (ValueError, TypeError) as exc:  # odd claim types PyJWT does not wrap
            raise CredentialRejected(f"invalid claims: {exc}") from None
        if not isinstance(claims, dict):
            raise CredentialRejected("claims are not an object")
        return claims

    def _jwks_key(self, header: dict[str, Any], alg: str) -> jwt.PyJWK:
        assert self.jwks is not None
        kid = header.get("kid")
        if not _valid_kid(kid):
            raise CredentialRejected("kid missing or malformed")
        jwk_data = self.jwks.get(kid)
        if jwk_data is None:
            raise CredentialRejected(f"unknown kid {kid!r}")
        if jwk_data.get("alg") not in (None, alg):
            raise CredentialRejected(f"key {kid!r} is for {jwk_data.get('alg')!r}, token says {alg!r}")
        kty = jwk_data.get("kty")
        rsa_mismatch = alg.startswith(("RS", "PS")) and kty != "RSA"
        ec_mismatch = alg.startswith("ES") and (kty != "EC" or jwk_data.get("crv") != _EC_CURVES.get(alg))
        if rsa_mismatch or ec_mismatch:
            raise CredentialRejected(f"key {kid!r} ({kty}) does not fit {alg}")
        cache_key = (json.dumps(jwk_data, sort_keys=True), alg)
        key = self._keys.get(cache_key)
        if key is None:
            try:
                key = jwt.PyJWK(jwk_data, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise CredentialRejected(f"unusable key {kid!r}: {exc}") from None
            if len(self._keys) > 64:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def _secret_key(self) -> bytes:
        assert self.secrets is not None and self.config.secret_name is not None
        now = self.clock()
        if self._secret is None or now - self._secret[1] >= self.config.jwks_refresh_s:
            value = self.secrets.get(self.config.secret_name)
            if not value:
                _log.warning("JWT secret %r is not set; refusing every token", self.config.secret_name)
                raise CredentialRejected("signing secret not configured")
            self._secret = (value, now)
        return self._secret[0].encode("utf-8")
