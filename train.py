"""Train, decode and score a masked diffusion LM: ``python train.py strategy=blockwise block=32``.

See README.md; ``python train.py --help`` lists the config groups.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from blocksft.runs import job
from blocksft.runs.cli import quote_numeric_group_overrides, unknown_group_option
from blocksft.runs.identity import register_resolvers

register_resolvers()  # ${config_hash:}, ${job_dir:...}: output folders named from the config


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    job.main(cfg)


if __name__ == "__main__":
    sys.argv[1:] = quote_numeric_group_overrides(sys.argv[1:])
    if (error := unknown_group_option(sys.argv[1:], Path(__file__).parent / "conf")) is not None:
        print(error, file=sys.stderr)
        sys.exit(2)
    main()
