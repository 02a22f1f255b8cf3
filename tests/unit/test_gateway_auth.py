"""Bearer parsing, key format and the key cache (no Postgres: a fake store)."""

from __future__ import annotations

import pytest

from agentstream.gateway.auth import Authenticator, bearer_token
from agentstream.gateway.errors import ApiError
from agentstream.gateway.tenants import (
    KEY_PATTERN,
    Tenant,
    TenantError,
    check_tenant_name,
    hash_key,
    new_key,
)


class FakeStore:
    def __init__(self, keys: dict[str, Tenant]) -> None:
        self.keys = keys
        self.lookups = 0

    async def lookup(self, key: str) -> Tenant | None:
        self.lookups += 1
        return self.keys.get(key)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic abc", "bearerabc", "Token x"]
)
def test_malformed_authorization_headers_are_401(header: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        bearer_token(header)
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc") == bearer_token("Bearer abc") == "abc"


def test_keys_have_the_documented_shape_and_are_stored_hashed() -> None:
    key_id, key = new_key()
    match = KEY_PATTERN.match(key)
    assert match is not None and match.group(1) == key_id
    assert len(hash_key(key)) == 32 and hash_key(key) != key.encode()
    assert new_key()[1] != key


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "é"])
def test_bad_tenant_names(name: str) -> None:
    with pytest.raises(TenantError):
        check_tenant_name(name)


async def test_valid_keys_are_cached_and_unknown_ones_refused() -> None:
    _, key = new_key()
    store = FakeStore({key: Tenant("acme", "k1")})
    auth = Authenticator(store, cache_s=60)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await auth.authenticate(f"Bearer {key}")).tenant_id == "acme"
    assert store.lookups == 1
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            await auth.authenticate("Bearer ask_000000000000_" + "x" * 43)
        assert refused.value.status == 401
    assert store.lookups == 2  # the unknown key is remembered briefly too


async def test_clearing_the_cache_forgets_revoked_keys() -> None:
    _, key = new_key()
    store = FakeStore({key: Tenant("acme", "k1")})
    auth = Authenticator(store, cache_s=60)  # type: ignore[arg-type]
    await auth.authenticate(f"Bearer {key}")
    store.keys.clear()  # revoked in Postgres...
    auth.clear()  # ...and NOTIFY reached this gateway
    with pytest.raises(ApiError):
        await auth.authenticate(f"Bearer {key}")
