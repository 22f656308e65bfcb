"""Credentials from the environment never reach anything a run writes: configs, results.json, logs, W&B files."""

from __future__ import annotations

import pytest

from blocksft.runs.redact import REDACTED, environment_secrets, redact
from helpers.runs import run_train

FAKE_KEY = "wandb-fake-key-0123456789abcdef0123456789"


def test_secret_values_and_credential_keys_are_redacted():
    config = {
        "logger": {"api_key": "abc123456789", "note": f"key={FAKE_KEY}"},
        "model": {"tokenizer": "char", "mask_token": "[MASK]"},
        "budget": {"count": "eligible"},
        "supervised_tokens": 5,
        "items": [FAKE_KEY, "plain"],
    }
    redacted = redact(config, secrets={FAKE_KEY})
    assert redacted["logger"] == {"api_key": REDACTED, "note": f"key={REDACTED}"}
    assert redacted["model"] == {"tokenizer": "char", "mask_token": "[MASK]"}
    assert redacted["supervised_tokens"] == 5 and redacted["items"] == [REDACTED, "plain"]


def test_environment_secrets_are_found_by_variable_name():
    env = {"WANDB_API_KEY": FAKE_KEY, "HF_TOKEN": "hf_abcdefghijkl", "HOME": "/root/home-dir", "MY_TOKEN": "1"}
    assert environment_secrets(env) == {FAKE_KEY, "hf_abcdefghijkl"}


@pytest.mark.slow
def test_fake_wandb_key_never_appears_in_run_outputs(tmp_path):
    args = [
        "debug=smoke",
        "logger=wandb",
        "+leak.plain=${oc.env:WANDB_API_KEY}",
        "+leak.api_token=${oc.env:WANDB_API_KEY}",
    ]
    result = run_train(args, tmp_path, env={"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "results.json").is_file()
    assert FAKE_KEY not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" and "wandb" in str(p) for p in written), "the W&B offline run wrote its config"
    leaking = [str(p) for p in written if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaking, f"the fake key was written to {leaking}"
