"""Keep credentials out of everything a run writes or logs (configs, results.json, W&B, CSV hparams).

A value is a secret if its key looks like a credential (``api_key``, ``token``, ``password``,
``secret``...) or if it equals the value of an environment variable whose name looks like one
(``WANDB_API_KEY``, ``HF_TOKEN``...), whatever key the config stores it under (for example a value
interpolated with ``${oc.env:WANDB_API_KEY}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential|authorization)", re.IGNORECASE)
# Config keys that contain "token" but hold counts or ids, not credentials.
NOT_SECRET_KEYS = re.compile(
    r"(_tokens?$|^tokens?$|token_id|_token_ids?$|tokenizer|max_new_tokens|tokens_)", re.IGNORECASE
)
MIN_SECRET_LENGTH = 8  # shorter environment values (flags such as "1") are not treated as secrets


def environment_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of environment variables whose names look like credentials."""
    environ = os.environ if environ is None else environ
    return {value for name, value in environ.items() if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH}


def is_secret_key(key: str) -> bool:
    return bool(SECRET_NAME.search(key)) and not NOT_SECRET_KEYS.search(key)


def redact(value: Any, secrets: set[str] | None = None, key: str = "") -> Any:
    """A copy of a plain container (dicts, lists, scalars) with secret values replaced by ``<redacted>``."""
    secrets = environment_secrets() if secrets is None else secrets
    if isinstance(value, Mapping):
        return {k: redact(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets, key) for v in value]
    if isinstance(value, str):
        if (key and is_secret_key(key) and value) or value in secrets:
            return REDACTED
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
    return value
