# gsrepro: `make reproduce` regenerates every table and figure on SynthFF (CPU); `make test` checks everything.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python
PRESET ?= mini
# glibc page-fault overhead dominates CPU convolutions without these (see DESIGN.md)
export MALLOC_MMAP_MAX_ = 0
export MALLOC_TRIM_THRESHOLD_ = 68719476736
# an in-process notebook test leaves IN_TEST set, which turns a later nbdev_export into a no-op
unexport IN_TEST
# library notebooks are numbered (NN_name.ipynb); the paper notebooks (table*, fig_*, ...) are papermill experiments
LIB_NBS := $(wildcard nbs/[0-9][0-9]_*.ipynb)

.PHONY: setup test reproduce lab export clean-nbs check-clean check-sync nbtest pytest

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt setup.py settings.ini
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

export: setup
	$(BIN)/nbdev_export

clean-nbs: setup
	$(BIN)/nbdev_clean

# notebooks are committed clean: nbdev_clean must leave no diff
check-clean: setup
	$(BIN)/nbdev_clean
	@git diff --exit-code --stat -- nbs || { echo "notebooks were not clean: run 'make clean-nbs' and commit"; exit 1; }

# the library is in sync with its notebooks: nbdev_export changes nothing under gsrepro/
check-sync: setup
	$(BIN)/nbdev_export
	@test -z "$$(git status --porcelain -- gsrepro)" || { git status --porcelain -- gsrepro; echo "gsrepro/ is out of sync with nbs/: run 'make export' and commit"; exit 1; }

nbtest: setup
	$(BIN)/nbdev_test --n_workers 2 --skip_file_re '^(?![0-9][0-9]_)' --do_print

pytest: setup
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=15 -o tmp_path_retention_policy=failed tests   # loadfile: a module's tests share module-scoped runs; the 15 slowest listed; only failed tests keep their temporary folders (the paper-path runs are 3 GB)

test: check-clean check-sync nbtest pytest

# PRESET=paper needs the folders of `gsrepro preprocess`: make reproduce PRESET=paper FFPP=... CELEBDF=... DFDC=...
reproduce: setup
	$(BIN)/gsrepro reproduce --preset $(PRESET) $(if $(FFPP),--ffpp $(FFPP)) $(if $(CELEBDF),--celebdf $(CELEBDF)) \
		$(if $(DFDC),--dfdc $(DFDC)) $(if $(DEVICE),--device $(DEVICE)) $(if $(ONLY),--only $(ONLY)) $(if $(OUT),--out $(OUT))

# as root (common in containers) jupyter refuses to start without --allow-root
lab: setup
	$(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root)
