"""The composition root: one App per process, its background jobs and its lifecycle."""

from __future__ import annotations

import pytest

from m2mauth.bootstrap import App, Timing, bootstrap
from m2mauth.core.policy import TokenPolicy
from tests.token_requests import secret_request
from tests.unit.conftest import ENV, TokenWorld
from tests.waiting import wait_for


def app_for(world: TokenWorld, timing: Timing) -> App:
    """An App over the world's store, root key and clock (as a second process would be)."""
    return bootstrap(
        world.settings, store=world.store, root_key=world.root_key, clock=world.clock, timing=timing
    )


def test_bootstrap_wires_one_of_each_and_the_settings_reach_the_core(world: TokenWorld) -> None:
    app = app_for(world, Timing())
    assert app.servicers is app.servicers  # built once
    assert app.http_backend is app.http_backend
    assert app.tokens.policy == TokenPolicy(
        issuer=world.settings.issuer,
        default_audience=world.settings.audience,
        token_ttl_seconds=world.settings.token_ttl_seconds,
        max_token_ttl_seconds=world.settings.max_token_ttl_seconds,
        signing_algorithm=world.settings.signing_algorithm,
        key_rotation_interval_seconds=world.settings.key_rotation_interval_seconds,
        jwks_max_age_seconds=world.settings.jwks_max_age_seconds,
        clock_leeway_seconds=world.settings.clock_leeway_seconds,
    )
    # The store was handed in: the App does not close it.
    assert app.owns_store is False
    app.close()
    world.store.ping()


def test_an_application_ttl_above_the_server_cap_is_refused(world: TokenWorld) -> None:
    from m2mauth.core import errors  # noqa: PLC0415
    from m2mauth.core.applications import ApplicationFields  # noqa: PLC0415

    app = app_for(world, Timing())
    org = app.organizations.create(ENV, "Acme", "", None)
    cap = world.settings.max_token_ttl_seconds
    assert (
        app.applications.create(
            ENV, org.id, ApplicationFields(name="ok", token_ttl_seconds=cap)
        ).token_ttl_seconds
        == cap
    )
    with pytest.raises(errors.InvalidField) as info:
        app.applications.create(ENV, org.id, ApplicationFields(name="x", token_ttl_seconds=cap + 1))
    assert info.value.field == "token_ttl_seconds"
    assert str(cap) in info.value.message


def test_usage_is_flushed_in_the_background_and_on_close(world: TokenWorld) -> None:
    app = app_for(world, Timing(flush_interval=3600, monotonic=world.monotonic))
    app.start()
    c = world.client()
    for _ in range(3):
        app.tokens.issue_token(secret_request(c.client_id, c.secret))
    assert world.apps.list_secrets(ENV, c.app.id)[0].last_used_at is None
    used_at = world.clock()
    world.clock.advance(30)
    app.close()
    [secret] = world.apps.list_secrets(ENV, c.app.id)
    assert secret.last_used_at == used_at
    app.close()  # idempotent


def test_background_jobs_flush_usage_and_maintain_keys(world: TokenWorld) -> None:
    app = app_for(
        world, Timing(flush_interval=0.02, maintenance_interval=0.02, monotonic=world.monotonic)
    )
    app.start()
    app.background.start()  # idempotent: no second set of threads
    assert sorted(t.name for t in app.background.threads) == ["maintenance", "usage-flush"]
    c = world.client()
    app.tokens.issue_token(secret_request(c.client_id, c.secret))
    assert wait_for(
        lambda: world.apps.list_secrets(ENV, c.app.id)[0].last_used_at is not None, interval=0.01
    )

    ring = app.tokens.ring
    old_kid = ring.current_signer()[0]
    world.components.ring.rotate()  # "another process" rotates...
    assert wait_for(lambda: ring.current_signer()[0] != old_kid, interval=0.01)  # ...and it is seen
    # retire_at: max TTL + leeway + the rotating ring's refresh period (30 s).
    world.clock.advance(3600 + 30 + 30)
    assert wait_for(lambda: ring.verification_key(old_kid) is None, interval=0.01)
    assert wait_for(lambda: old_kid not in {k["kid"] for k in app.tokens.jwks()}, interval=0.01)

    def state_of_old_key() -> str:
        return next(k.state.value for k in ring.list_keys() if k.id == old_kid)

    # Written by the maintenance job.
    assert wait_for(lambda: state_of_old_key() == "retired", interval=0.01)
    app.close()
    assert not any(t.is_alive() for t in app.background.threads)
