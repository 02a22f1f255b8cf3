"""Providers: one per endpoint kind of the agents file (``openai``, ``anthropic``, ``sim``).

:func:`build_provider` is the only place an endpoint's credential is read:
from the environment variable the agents file names, at start, into request
headers, and into the provider's list of strings to redact from errors. It is
never stored anywhere the event log, a log line, a metric label or a prompt
could show it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from processors.agents.catalog import EndpointConfig
from processors.agents.sim_model import SimulatedModel
from processors.executors.pool.errors import PoolConfigError
from processors.executors.pool.http import Transport
from processors.executors.pool.providers.anthropic import AnthropicProvider, messages_url
from processors.executors.pool.providers.base import (
    DeltaSink,
    EndpointOptions,
    Provider,
    estimate_tokens,
)
from processors.executors.pool.providers.openai import OpenAIProvider, chat_url
from processors.executors.pool.providers.sim import SimProvider

__all__ = [
    "AnthropicProvider",
    "DeltaSink",
    "EndpointOptions",
    "OpenAIProvider",
    "Provider",
    "SimProvider",
    "build_provider",
    "estimate_tokens",
]


def _credential(endpoint: EndpointConfig, key: str, environ: Mapping[str, str]) -> str:
    if endpoint.api_key_env is None:
        return ""
    value = environ.get(endpoint.api_key_env)
    if not value:
        raise PoolConfigError(
            f"{key}.api_key_env", f"environment variable {endpoint.api_key_env} is not set"
        )
    return value


def build_provider(
    endpoint: EndpointConfig,
    *,
    key: str,
    transport: Transport,
    default_sim: SimulatedModel,
    environ: Mapping[str, str] | None = None,
) -> tuple[Provider, EndpointOptions]:
    """The provider serving ``endpoint`` (agents-file path ``key``) and its checked options."""
    env = os.environ if environ is None else environ
    if endpoint.provider == "sim":
        model = SimulatedModel.from_options(endpoint.options) if endpoint.options else default_sim
        return SimProvider(model, label=f"sim/{endpoint.model}"), EndpointOptions()
    options = EndpointOptions.parse(endpoint.options, f"{key}.options")
    secret = _credential(endpoint, key, env)
    if endpoint.provider == "openai":
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        provider: Provider = OpenAIProvider(
            model=endpoint.model,
            url=chat_url(endpoint.base_url),
            headers=headers,
            secrets=(secret,) if secret else (),
            options=options,
            transport=transport,
        )
        return provider, options
    if endpoint.provider == "anthropic":
        headers = {"anthropic-version": options.anthropic_version}
        if secret:
            headers["x-api-key"] = secret
        provider = AnthropicProvider(
            model=endpoint.model,
            url=messages_url(endpoint.base_url),
            headers=headers,
            secrets=(secret,) if secret else (),
            options=options,
            transport=transport,
        )
        return provider, options
    raise PoolConfigError(f"{key}.provider", f"no provider {endpoint.provider!r} in the pool")
