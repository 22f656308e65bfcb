"""``python -m blocksft.lm_eval <lm-eval's flags>``: lm-eval's own command line, with the model ``blocksft``
registered and the shipped tasks on the task path (``--include_path`` defaults to ``blocksft.lm_eval.TASKS_DIR``;
one given on the command line replaces it). A bad model argument ends the command with one line on stderr
(``model_args error: ...``) and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from blocksft.errors import ConfigError
from blocksft.lm_eval import TASKS_DIR

HELP_FLAGS = ("-h", "--help")


def with_task_path(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--include_path TASKS_DIR`` appended unless it names one (or asks only for help)."""
    argv = list(argv)
    if not argv or argv[0] in HELP_FLAGS or any(a == "--include_path" or a.startswith("--include_path=") for a in argv):
        return argv
    return [*argv, "--include_path", str(TASKS_DIR)]


def main(argv: Sequence[str] | None = None) -> None:
    """Register the model, then run lm-eval's ``cli_evaluate`` on ``argv`` (default: this command's)."""
    from lm_eval.__main__ import cli_evaluate

    import blocksft.lm_eval.model  # noqa: F401 (registers the model "blocksft")

    sys.argv = [sys.argv[0], *with_task_path(sys.argv[1:] if argv is None else argv)]
    try:
        cli_evaluate()
    except ConfigError as error:
        print(f"model_args error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
