"""``compose_config``: the project's config as ``train.py`` would compose it, for code that is not ``train.py``
(tests, the benchmark, diagnostics, notebooks).

The resolvers are registered, numeric group options are quoted (``block=32``) and the paths Hydra fills
at run time are set explicitly, so the result resolves without a Hydra run. ``return_hydra_config=True``
keeps the ``hydra`` node (a study's sweep settings).
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from blocksft.runs.cli import quote_numeric_group_overrides
from blocksft.runs.identity import PROJECT_ROOT, register_resolvers

CONF_DIR = PROJECT_ROOT / "conf"


def compose_config(
    overrides: list[str] | tuple[str, ...] = (),
    output_dir: str | Path = "/tmp/blocksft-compose",
    return_hydra_config: bool = False,
    conf_dir: str | Path = CONF_DIR,
) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as on the command line (``paths.output_dir`` set to
    ``output_dir``; no folder is created)."""
    register_resolvers()
    paths = [f"paths.output_dir={output_dir}"]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=paths + quote_numeric_group_overrides(list(overrides)),
            return_hydra_config=return_hydra_config,
        )
