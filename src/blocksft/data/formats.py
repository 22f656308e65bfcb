"""The row formats of a run's data (``data.format``) and what each requires of the config.

Kept apart from ``blocksft.data.documents`` so that validating a config never imports the data
module's heavy dependencies (Lightning): a bad config is refused before they load.
"""

from __future__ import annotations

from omegaconf import DictConfig

from blocksft.errors import ConfigError

DATA_FORMATS = ("prompt_response", "documents")


def validate_data_format(cfg: DictConfig, whole_sequence: bool) -> None:
    """``data.format`` and what it implies: documents need ``data.text_field``; a strategy that masks
    whole sequences (``MaskingStrategy.whole_sequence``, ``strategy=pretrain``) needs documents."""
    data_format = cfg.data.get("format", "prompt_response")
    if data_format not in DATA_FORMATS:
        raise ConfigError(f"data.format={data_format!r} is invalid: allowed one of {', '.join(DATA_FORMATS)}")
    if data_format == "documents":
        field = cfg.data.get("text_field")
        if not isinstance(field, str) or not field:
            raise ConfigError(
                f"data.text_field={field!r} is invalid: allowed a non-empty field name (data.format=documents)"
            )
    elif whole_sequence:
        raise ConfigError(
            f"strategy={cfg.strategy.name} is invalid with data.format={data_format}: allowed "
            "data.format=documents (pretraining masks whole documents; e.g. experiment=pretrain_base)"
        )
