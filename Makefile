# mlstep — one place for every command a learner, a teacher or CI runs.
#   make lab      create .venv (if needed), install, open JupyterLab on chapters/ (--allow-root as root)
#   make test     create .venv (if needed), install, run unit tests + every chapter (nbval)
#   make execute  re-run every chapter in place and normalise it (after changing mlstep)
#   make student  write the student editions (no solutions, no outputs) to build/student
#   make grade NB=path/to/submitted.ipynb   run a submitted notebook and report its checks
#   make verify-student   check the student editions leak nothing and fail only at exercises
#   make verify-student-quick   the same guarantee in about a minute: names checked statically, only the exercises run
#   make site     build the course website into build/site/html (README, chapters as committed, data card, benchmarks)
#   make test-site        check the built website in headless Chromium (skips without Chromium)
#   make gpu-check OUT=dir   the prepared GPU check (benchmarks/gpu_check.py): JSON + markdown in dir
#   make roofline  the share of this machine's measured matmul peak a training step achieves (fp32, bf16)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mlstep-installed
SITE_STAMP := $(VENV)/.mlstep-site-installed
export PYTHONHASHSEED := 0

.PHONY: install lab test test-fast execute student verify-student verify-student-quick grade lint benchmark roofline site test-site gpu-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

# the website's tools (the `site` extra) on top of the dev install, in the same venv
$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,site]"
	@touch $(SITE_STAMP)

install: $(STAMP)

# JupyterLab refuses to start as root (containers, some cloud machines) without --allow-root;
# it is passed only there, so an ordinary user keeps Jupyter's guard.
LAB_FLAGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_FLAGS) chapters/

test: $(STAMP)
	$(BIN)/python -m pytest

# unit tests only (no notebooks): the quick inner loop while changing mlstep
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -p no:nbval -o addopts=""

execute: $(STAMP)
	$(BIN)/python scripts/execute_chapters.py $(NB)

student: $(STAMP)
	$(BIN)/python -m mlstep.exercises student --src chapters --out build/student

# build every student edition, check none leaks a solution, run each: only exercise cells may fail
verify-student: $(STAMP)
	$(BIN)/python -m mlstep.exercises verify --src chapters

# what `make test` checks for every chapter (tests/test_student_editions.py), from the command line
verify-student-quick: $(STAMP)
	$(BIN)/python -m mlstep.exercises verify --quick --src chapters

grade: $(STAMP)
	@test -n "$(NB)" || (echo "usage: make grade NB=path/to/notebook.ipynb" && exit 2)
	$(BIN)/python -m mlstep.exercises grade "$(NB)" --json "$(basename $(NB)).grade.json"

lint: $(STAMP)
	$(BIN)/ruff check mlstep tests scripts benchmarks website

# static HTML from the committed, executed chapters (nothing is executed); works offline once installed
site: $(SITE_STAMP)
	$(BIN)/python website/build.py

# the built site in headless Chromium (`make test` runs it too once the site is built)
test-site: $(SITE_STAMP)
	$(BIN)/python -m pytest tests/test_site.py -p no:nbval -o addopts=""

benchmark: $(STAMP)
	$(BIN)/python benchmarks/pretrain_step.py

# fp32 and bf16 matmul peak vs the GPT and BERT training steps: benchmarks/results/roofline.json
roofline: $(STAMP)
	$(BIN)/python benchmarks/roofline.py $(ARGS)

# the prepared GPU check (one command for a short GPU window): make gpu-check OUT=runs/gpu
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out $(or $(OUT),runs/gpu-check) $(ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis data/generated data/cache
