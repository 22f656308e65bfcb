# One-command setup + run. `make smoke` (first contact), `make train ARGS="strategy=classical"`, `make test`
# (`make test-fast`: without the tests marked slow).
# Installs come from the tested lock (requirements/lock-cpu.txt); see requirements/README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements/lock-cpu.txt
OLDEST := requirements/oldest.txt
# torch is installed first, at the lock's version. Off these machines the default index serves the
# multi-GB CUDA build; for the CPU wheel: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC := $(shell grep -E '^torch==' $(LOCK))
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
export WANDB_MODE ?= offline

.PHONY: setup smoke train test test-fast test-latest test-oldest lock benchmark clean

# $(1) venv, $(2) pip arguments for the project (constraints or upgrade flags)
define make_venv
	test -x $(1)/bin/python || python3 -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet $(TORCH_INDEX_ARGS) "$(TORCH_SPEC)"
	$(1)/bin/python -m pip install --quiet $(2) -e ".[dev]"
endef

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(call make_venv,$(VENV),-c $(LOCK))
	touch $@

setup: $(VENV)/.installed

# Train, decode and score end to end in well under two minutes on 2 cores (debug=smoke: a tiny model,
# 10 steps, 16 problems), written under outputs/debug/runs/, never beside real runs.
smoke: setup
	$(PY) train.py debug=smoke $(ARGS)

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

# The suite without the tests marked slow (SIGKILL/resume, DDP, W&B, sweeps): a quick check while working.
# `make test` (the whole suite) is what CI runs.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(ARGS)

# Newest releases inside pyproject's ranges, in a fresh venv, then the whole suite: drift shows up here
# as a red test before it reaches a user. The versions that differ from the lock are printed first.
test-latest:
	rm -rf .venv-latest
	$(call make_venv,.venv-latest,)
	.venv-latest/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/' \
		| diff $(LOCK) - | grep -E '^[<>] [A-Za-z]' || echo "the newest releases equal the lock"
	.venv-latest/bin/python -m pytest $(ARGS)

# The lower bounds pyproject claims (requirements/oldest.txt), in a fresh venv, then the whole suite.
test-oldest:
	rm -rf .venv-oldest
	$(call make_venv,.venv-oldest,-c $(OLDEST))
	.venv-oldest/bin/python -m pytest $(ARGS)

# Regenerate the lock: the newest releases, written only if the whole suite passed on them.
lock: test-latest
	{ echo "# Tested lock for the CPU install (make lock, $$(date -u +%F), Python $$(.venv-latest/bin/python -c 'import platform; print(platform.python_version())'))."; \
	  echo "# torch is installed first at this version; see requirements/README.md."; \
	  .venv-latest/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > $(LOCK)

benchmark: setup
	$(PY) -m experiments.bench $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
