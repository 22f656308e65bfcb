"""Code the test modules share (fixtures stay in ``tests/conftest.py``); ``tests/`` is on the import path
(``pythonpath`` in pyproject.toml), so a test imports ``from helpers.runs import run_in_process``."""
