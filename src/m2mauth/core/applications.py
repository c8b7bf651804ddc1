"""M2M application management and their client secrets."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from m2mauth.core import audit, defaults, ids, validation
from m2mauth.core.changes import Change, Kind
from m2mauth.core.client_keys import checked_jwks_uri, normalized_jwks
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import CLIENT_SECRET_PREFIX, CredentialHasher
from m2mauth.core.errors import EtagMismatch, InvalidField, NotFound, SecretLimitReached
from m2mauth.core.federation import FIELD as FEDERATION_FIELD
from m2mauth.core.federation import checked_credentials
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import (
    Application,
    ClientSecret,
    DailyUsage,
    FederatedCredential,
    Principal,
    TokenEndpointAuthMethod,
)
from m2mauth.core.organizations import visible_organization
from m2mauth.core.pagination import Page, Pager, PageTokenCodec
from m2mauth.core.permissions import Permission, require
from m2mauth.core.row_locks import read_for_update

UPDATABLE = (
    "name",
    "description",
    "scopes",
    "audiences",
    "token_ttl_seconds",
    "token_quota_per_minute",
    "enabled",
    "token_endpoint_auth_method",
    "jwks",
    "jwks_uri",
    "federated_credentials",
)
AUTH_FIELDS = ("token_endpoint_auth_method", "jwks", "jwks_uri", "federated_credentials")
RESOURCE = "application"
APP_READ = Permission.APPLICATIONS_READ
APP_WRITE = Permission.APPLICATIONS_WRITE
SECRET_READ = Permission.SECRETS_READ
SECRET_WRITE = Permission.SECRETS_WRITE
DEFAULT_USAGE_DAYS = 30
MAX_USAGE_DAYS = 366


@dataclasses.dataclass(frozen=True, slots=True)
class ApplicationFields:
    """The writable fields of an application, as a request carries them."""

    name: str = ""
    description: str = ""
    scopes: Sequence[str] = ()
    audiences: Sequence[str] = ()
    token_ttl_seconds: int = 0
    token_quota_per_minute: int = 0
    enabled: bool | None = None
    # None: the default, client_secret.
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = None
    # The public JWK Set as JSON, or the URL to fetch it from: one of them
    # with private_key_jwt, neither otherwise.
    jwks: str = ""
    jwks_uri: str = ""
    # The external identities it trusts: with federated only (core/federation.py).
    federated_credentials: Sequence[FederatedCredential] = ()


def etag(app: Application) -> str:
    """The application's etag (AIP-154): a digest of everything stored of it, so
    any change gives another. Its times as microseconds since the epoch, not as
    text, so every process and database driver computes the same one."""

    def plain(value: object) -> object:
        if isinstance(value, datetime):
            return round(value.timestamp() * 1_000_000)
        if isinstance(value, TokenEndpointAuthMethod):
            return value.value
        raise TypeError(type(value).__name__)

    fields = dataclasses.asdict(app)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=plain).encode())
    return digest.hexdigest()[:32]


@dataclasses.dataclass(frozen=True, slots=True)
class AuthSettings:
    """An application's client authentication, as stored."""

    token_endpoint_auth_method: TokenEndpointAuthMethod
    jwks: str
    jwks_uri: str
    federated_credentials: tuple[FederatedCredential, ...] = ()


def auth_settings(
    token_endpoint_auth_method: TokenEndpointAuthMethod | None,
    jwks: str,
    jwks_uri: str,
    federated_credentials: Sequence[FederatedCredential] = (),
    *,
    allow_http_loopback: bool = False,
) -> AuthSettings:
    """One way to authenticate, never silently two: a JWK Set (inline or by URI,
    not both) goes with private_key_jwt and only with it, federated credentials
    with federated and only with it; they are checked and normalised here."""
    method = token_endpoint_auth_method or TokenEndpointAuthMethod.CLIENT_SECRET
    if method is not TokenEndpointAuthMethod.FEDERATED and federated_credentials:
        raise InvalidField(
            FEDERATION_FIELD, "must be empty unless token_endpoint_auth_method is federated"
        )
    if method is not TokenEndpointAuthMethod.PRIVATE_KEY_JWT:
        for name, value in (("jwks", jwks), ("jwks_uri", jwks_uri)):
            if value:
                raise InvalidField(
                    f"application.{name}",
                    "must be empty unless token_endpoint_auth_method is private_key_jwt",
                )
        trusted = (
            checked_credentials(federated_credentials, allow_http_loopback=allow_http_loopback)
            if method is TokenEndpointAuthMethod.FEDERATED
            else ()
        )
        return AuthSettings(method, "", "", trusted)
    if jwks and jwks_uri:
        raise InvalidField("application.jwks_uri", "give jwks or jwks_uri, not both")
    if jwks_uri:
        uri = checked_jwks_uri(
            "application.jwks_uri", jwks_uri, allow_http_loopback=allow_http_loopback
        )
        return AuthSettings(method, "", uri)
    if not jwks:
        raise InvalidField(
            "application.jwks",
            "is required (or jwks_uri) when token_endpoint_auth_method is private_key_jwt",
        )
    return AuthSettings(method, normalized_jwks("application.jwks", jwks), "")


def visible_application(uow: UnitOfWork, principal: Principal, app_id: str) -> Application:
    """Fetch an application the principal may see; NOT_FOUND otherwise (AIP-193)."""
    validation.resource_id("id", app_id, ids.APPLICATION, RESOURCE)
    app = uow.get_application(app_id)
    # Tenant check on every lookup: another organization's app is "not found".
    if app is None or not principal.can_see(app.organization_id):
        raise NotFound(RESOURCE, app_id)
    return app


class Applications:
    def __init__(
        self,
        store: Store,
        pages: PageTokenCodec,
        hasher: CredentialHasher,
        clock: Clock,
        max_secrets: int = defaults.MAX_CLIENT_SECRETS,
        max_token_ttl_seconds: int = defaults.MAX_TOKEN_TTL_SECONDS,
        *,
        allow_http_jwks_uri_on_loopback: bool = False,
    ) -> None:
        self._store = store
        self._pages = pages
        self._hasher = hasher
        self._clock = clock
        self._max_secrets = max_secrets
        # An override above the server's cap would be clamped at issuance:
        # refuse it here, where the operator can see why.
        self._max_token_ttl = max_token_ttl_seconds
        # --dev: a jwks_uri may be http to a loopback host (a local test issuer).
        self._http_loopback = allow_http_jwks_uri_on_loopback

    # --- applications ----------------------------------------------------
    def create(
        self, principal: Principal, organization_id: str, f: ApplicationFields
    ) -> Application:
        require(principal, APP_WRITE)
        if not organization_id:
            raise InvalidField("application.organization_id", "is required")
        now = self._clock()
        ms = int(now.timestamp() * 1000)
        auth = auth_settings(
            f.token_endpoint_auth_method,
            f.jwks,
            f.jwks_uri,
            f.federated_credentials,
            allow_http_loopback=self._http_loopback,
        )
        app = Application(
            id=ids.new_id(ids.APPLICATION, ms),
            client_id=ids.new_id(ids.CLIENT, ms),
            organization_id=organization_id,
            name=validation.name("application.name", f.name),
            description=validation.optional_text(
                "application.description", f.description, validation.MAX_DESCRIPTION
            ),
            scopes=validation.scopes(f.scopes),
            audiences=validation.audiences(f.audiences),
            token_ttl_seconds=validation.token_ttl(f.token_ttl_seconds, self._max_token_ttl),
            token_quota_per_minute=validation.token_quota(f.token_quota_per_minute),
            enabled=True if f.enabled is None else f.enabled,
            created_at=now,
            updated_at=now,
            token_endpoint_auth_method=auth.token_endpoint_auth_method,
            jwks=auth.jwks,
            jwks_uri=auth.jwks_uri,
            federated_credentials=auth.federated_credentials,
        )
        with self._store.unit_of_work() as uow:
            try:
                visible_organization(uow, principal, organization_id)
            except NotFound as exc:
                # Name the request field so the caller knows which id is wrong.
                raise InvalidField("application.organization_id", exc.message) from None
            uow.add_application(app)
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "application.create",
                    organization_id=organization_id,
                    application_id=app.id,
                    target=app.id,
                    details={"token_endpoint_auth_method": auth.token_endpoint_auth_method.value},
                )
            )
        return app

    def get(self, principal: Principal, app_id: str) -> Application:
        require(principal, APP_READ)
        with self._store.reading() as uow:
            return visible_application(uow, principal, app_id)

    def list(
        self, principal: Principal, organization_id: str, requested_page_size: int, token: str
    ) -> Page[Application]:
        require(principal, APP_READ)
        pager = Pager(
            self._pages, "applications", {"org": organization_id}, requested_page_size, token
        )
        with self._store.reading() as uow:
            if organization_id:
                visible_organization(uow, principal, organization_id)
            scope = organization_id or principal.organization_id
            rows = uow.list_applications(
                organization_id=scope, after_id=pager.cursor, limit=pager.fetch
            )
        return pager.page(rows)

    def update(
        self,
        principal: Principal,
        app_id: str,
        mask: Sequence[str],
        f: ApplicationFields,
        *,
        expected_etag: str = "",
    ) -> Application:
        """Change the fields named in ``mask``; with ``expected_etag``, only if the
        application still has that etag (AIP-154), else EtagMismatch."""
        require(principal, APP_WRITE)
        if "organization_id" in mask:
            raise InvalidField("update_mask", "organization_id is immutable")
        paths = validation.update_mask(mask, UPDATABLE)
        changes: dict[str, object] = {}
        if "name" in paths:
            changes["name"] = validation.name("application.name", f.name)
        if "description" in paths:
            changes["description"] = validation.optional_text(
                "application.description", f.description, validation.MAX_DESCRIPTION
            )
        if "scopes" in paths:
            changes["scopes"] = validation.scopes(f.scopes)
        if "audiences" in paths:
            changes["audiences"] = validation.audiences(f.audiences)
        if "token_quota_per_minute" in paths:
            changes["token_quota_per_minute"] = validation.token_quota(f.token_quota_per_minute)
        if "token_ttl_seconds" in paths:
            changes["token_ttl_seconds"] = validation.token_ttl(
                f.token_ttl_seconds, self._max_token_ttl
            )
        if "enabled" in paths:
            changes["enabled"] = bool(f.enabled)
        with self._store.unit_of_work() as uow:
            current = read_for_update(
                uow, principal, app_id, visible_application, uow.lock_application
            )
            if expected_etag and expected_etag != etag(current):
                # Compared under the row lock: nobody can change it before the write.
                raise EtagMismatch(RESOURCE)
            if paths & set(AUTH_FIELDS):
                # Checked together, a field left out of the mask keeping its
                # stored value.
                chosen = {
                    name: getattr(f if name in paths else current, name) for name in AUTH_FIELDS
                }
                auth = auth_settings(**chosen, allow_http_loopback=self._http_loopback)
                # Not dataclasses.asdict: it would turn the credentials into dicts.
                changes.update({f.name: getattr(auth, f.name) for f in dataclasses.fields(auth)})
            now = self._clock()
            updated = dataclasses.replace(current, updated_at=now, **changes)  # type: ignore[arg-type]
            uow.update_application(updated)
            # Every process's client caches follow (core/changes.py): a new method
            # or key set is used, an old one refused, at once.
            uow.announce(Change(Kind.APPLICATION, app_id))
            details = {"fields": ",".join(sorted(paths))}
            if "token_endpoint_auth_method" in changes:
                # Public facts only: the JWK Set holds public keys, but the
                # audit trail needs no more than the method.
                details["token_endpoint_auth_method"] = updated.token_endpoint_auth_method.value
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "application.update",
                    organization_id=current.organization_id,
                    application_id=app_id,
                    target=app_id,
                    details=details,
                )
            )
        return updated

    def delete(self, principal: Principal, app_id: str) -> None:
        require(principal, APP_WRITE)
        with self._store.unit_of_work() as uow:
            app = visible_application(uow, principal, app_id)
            uow.delete_application(app_id)
            uow.announce(Change(Kind.APPLICATION, app_id))
            uow.add_audit_event(
                audit.event(
                    self._clock(),
                    principal.admin_key_id,
                    "application.delete",
                    organization_id=app.organization_id,
                    application_id=app_id,
                    target=app_id,
                )
            )

    def revoke_tokens(self, principal: Principal, app_id: str) -> datetime:
        """Kill switch: every token of the application issued until now is revoked."""
        require(principal, APP_WRITE)
        with self._store.unit_of_work() as uow:
            app = read_for_update(uow, principal, app_id, visible_application, uow.lock_application)
            now = self._clock()
            uow.update_application(dataclasses.replace(app, tokens_revoked_before=now))
            uow.announce(Change(Kind.APPLICATION, app_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "application.revoke_tokens",
                    organization_id=app.organization_id,
                    application_id=app_id,
                    target=app_id,
                )
            )
        return now

    # --- client secrets --------------------------------------------------
    def create_secret(
        self, principal: Principal, app_id: str, expires_at: datetime | None
    ) -> tuple[ClientSecret, str]:
        """Create a secret; return it and the plaintext, which is never stored."""
        require(principal, SECRET_WRITE)
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidField("expire_time", "must be in the future")
        plaintext = self._hasher.generate(CLIENT_SECRET_PREFIX)
        secret = ClientSecret(
            id=ids.new_id(ids.CLIENT_SECRET, int(now.timestamp() * 1000)),
            application_id=app_id,
            secret_hash=self._hasher.hash(plaintext),
            hint=self._hasher.hint(plaintext),
            created_at=now,
            expires_at=expires_at,
        )
        with self._store.unit_of_work() as uow:
            app = visible_application(uow, principal, app_id)
            # Serialise concurrent creates so the limit holds under races.
            uow.lock_application(app_id)
            live = [s for s in uow.list_client_secrets(app_id) if _is_live(s, now)]
            if len(live) >= self._max_secrets:
                raise SecretLimitReached(
                    f"application {app_id!r} already has {len(live)} live secrets "
                    f"(maximum {self._max_secrets}); revoke one first"
                )
            uow.add_client_secret(secret)
            uow.announce(Change(Kind.APPLICATION, app_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "client_secret.create",
                    organization_id=app.organization_id,
                    application_id=app_id,
                    target=secret.id,
                    details={"hint": secret.hint},
                )
            )
        return secret, plaintext

    def list_secrets(self, principal: Principal, app_id: str) -> builtins.list[ClientSecret]:
        require(principal, SECRET_READ)
        now = self._clock()
        with self._store.reading() as uow:
            visible_application(uow, principal, app_id)
            return [s for s in uow.list_client_secrets(app_id) if _is_live(s, now)]

    def revoke_secret(self, principal: Principal, app_id: str, secret_id: str) -> None:
        require(principal, SECRET_WRITE)
        validation.resource_id("id", secret_id, ids.CLIENT_SECRET, "client secret")
        with self._store.unit_of_work() as uow:
            app = visible_application(uow, principal, app_id)
            if not uow.delete_client_secret(app_id, secret_id):
                raise NotFound("client secret", secret_id)
            uow.announce(Change(Kind.APPLICATION, app_id))
            uow.add_audit_event(
                audit.event(
                    self._clock(),
                    principal.admin_key_id,
                    "client_secret.revoke",
                    organization_id=app.organization_id,
                    application_id=app_id,
                    target=secret_id,
                )
            )

    def usage(
        self, principal: Principal, app_id: str, days: int
    ) -> tuple[datetime | None, builtins.list[DailyUsage]]:
        """When the application last got a token, and its tokens per day over the
        last ``days`` days (today, UTC, included), newest first."""
        require(principal, APP_READ)
        if days == 0:
            days = DEFAULT_USAGE_DAYS
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise InvalidField("days", f"must be 0 (for {DEFAULT_USAGE_DAYS}) to {MAX_USAGE_DAYS}")
        since = self._clock().astimezone(UTC).date() - timedelta(days=days - 1)
        with self._store.reading() as uow:
            visible_application(uow, principal, app_id)
            daily = uow.list_daily_usage(app_id, since=since)
            secrets = uow.list_client_secrets(app_id)
        # The latest of the secrets' last uses and of the days counted (a
        # revoked secret's last use lives on in its day's count).
        candidates = [s.last_used_at for s in secrets if s.last_used_at is not None]
        candidates += [d.last_used_at for d in daily[:1]]
        return (max(candidates) if candidates else None), daily


def _is_live(secret: ClientSecret, now: datetime) -> bool:
    return secret.expires_at is None or secret.expires_at > now
