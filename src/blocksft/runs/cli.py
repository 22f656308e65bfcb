"""Command-line helpers for ``train.py``.

Hydra parses the override ``block=32`` as the integer 32 and refuses it as a config-group option
("Config group override must be a string"), although ``conf/block/32.yaml`` exists. We quote
numeric options of our numerically named groups before Hydra sees the command line, so
``block=32`` and the sweep ``block=8,16,32,64`` both select ``conf/block/<n>.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path

NUMERIC_GROUPS = ("block",)
_NUMERIC_LIST = re.compile(r"^\d+(,\d+)*$")


def quote_numeric_group_overrides(argv: list[str], groups: tuple[str, ...] = NUMERIC_GROUPS) -> list[str]:
    """``["block=32"]`` -> ``["block='32'"]``; ``block=8,16`` -> ``block='8','16'``; others unchanged."""
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in groups and _NUMERIC_LIST.match(value):
            arg = f"{key}=" + ",".join(f"'{v}'" for v in value.split(","))
        quoted.append(arg)
    return quoted


_SWEEP_SYNTAX = re.compile(r"^(choice|range|interval|glob|sort|shuffle|tag)\(")


def unknown_group_option(argv: list[str], conf_dir: Path) -> str | None:
    """A one-line ``config error`` for the first ``group=option`` naming an option that does not exist
    in ``conf/<group>/`` (listing the valid ones), or None. Hydra's own message for this spans several
    lines; groups Hydra itself provides (``hydra/...``) are left to Hydra."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        folder = conf_dir / group
        if not sep or group.startswith("hydra") or "." in group or not folder.is_dir() or _SWEEP_SYNTAX.match(value):
            continue
        options = sorted(
            (p.stem for p in folder.glob("*.yaml")), key=lambda o: (not o.isdigit(), int(o) if o.isdigit() else 0, o)
        )
        for option in value.split(","):
            option = option.strip().strip("'\"")
            if option and option != "null" and option not in options:
                return f"config error: {group}={option} is invalid: allowed one of {', '.join(options)}"
    return None
