"""The API's non-secret configuration, read from ``STATE/api.toml``.

Secrets never appear here: they come from the HSM (see ``keyring.py``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from system_under_test.faults import FAULTS, api_layer_faults


class ConfigError(ValueError):
    """``api.toml`` is missing a key, has a wrong type or names an unknown fault."""


@dataclass(frozen=True)
class ApiConfig:
    """What the API and the operator commands need to know to start.

    Attributes:
        state_dir: the backend's state directory (absolute).
        listen: where gunicorn binds (informative for the app).
        public_url: the edge's URL, used in recovery links.
        database_dsn: libpq conninfo without password (it comes from the HSM).
        redis_host: Redis host.
        redis_port: Redis port.
        hsm_module: path of the PKCS#11 module.
        hsm_token_label: label of the token that holds the keys.
        llm_base_url: base URL of the LLM provider (``/v1/messages`` is appended).
        resend_base_url: base URL of the mail provider (``/emails`` is appended).
        platform_base_url: base URL of the social platforms (``/{platform}/me``).
        upstream_ca_file: CA bundle that outbound HTTPS calls trust.
        faults: fault names (from ``FAULTS``) switched on for the api and ops layers.
        redis_password_file: fallback file for the Redis password, used only when
            the HSM does not hold it (the ``key-not-in-hsm`` fault).
    """

    state_dir: Path
    listen: str
    public_url: str
    database_dsn: str
    redis_host: str
    redis_port: int
    hsm_module: str
    hsm_token_label: str
    llm_base_url: str
    resend_base_url: str
    platform_base_url: str
    upstream_ca_file: str
    faults: frozenset[str] = field(default_factory=frozenset)
    redis_password_file: str | None = None

    def has_fault(self, name: str) -> bool:
        """Tell whether fault ``name`` is switched on.

        An unknown name is a programming error, so it raises instead of
        silently answering False.
        """
        if name not in FAULTS:
            raise KeyError(f"unknown fault {name!r}")
        return name in self.faults


_STRING_KEYS = (
    "listen",
    "public_url",
    "database_dsn",
    "redis_host",
    "hsm_module",
    "hsm_token_label",
    "llm_base_url",
    "resend_base_url",
    "platform_base_url",
    "upstream_ca_file",
)


def parse_config(data: dict[str, object]) -> ApiConfig:
    """Build an ``ApiConfig`` from the parsed TOML table, checking every key."""
    values: dict[str, str] = {}
    for key in (*_STRING_KEYS, "state_dir"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"api.toml: {key} must be a non-empty string")
        values[key] = value
    port = data.get("redis_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("api.toml: redis_port must be a port number")
    faults = data.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise ConfigError("api.toml: faults must be a list of strings")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ConfigError(f"api.toml: unknown faults {unknown}")
    # Edge and stack faults may be listed too; the app and ops only act on theirs.
    ours = frozenset(api_layer_faults(faults))
    password_file = data.get("redis_password_file")
    if password_file is not None and not isinstance(password_file, str):
        raise ConfigError("api.toml: redis_password_file must be a string")
    return ApiConfig(
        state_dir=Path(values.pop("state_dir")),
        redis_port=port,
        faults=ours,
        redis_password_file=password_file,
        **values,
    )


def load_config(path: str | Path) -> ApiConfig:
    """Read and check ``api.toml`` at ``path``."""
    with open(path, "rb") as handle:
        return parse_config(tomllib.load(handle))
