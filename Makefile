# The course's commands. `make course` and `make test` work on a fresh machine with only
# Python 3.10-3.12 and make: they create .venv and install what they need. Without make
# (Windows): the README's "Without make" commands do the same with python -m.
#
# The Python that creates .venv: PYTHON=... when given, else the first of python3.12,
# python3.11, python3.10 that runs, else python3 (refused below unless it is 3.10-3.12).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(or $(shell for v in 3.12 3.11 3.10; do python$$v -c 'import sys' >/dev/null 2>&1 && { echo python$$v; break; }; done),python3)
endif
VENV ?= .venv
PROFILE ?= full
BIN = $(VENV)/$(if $(filter Windows_NT,$(OS)),Scripts,bin)
# Installs go through CONSTRAINTS, the exact versions CI tested (`make lock` refreshes it).
CONSTRAINTS ?= constraints.txt
# The learner set (`pip install -e .`), plus EXTRAS (e.g. EXTRAS=gpu on an NVIDIA machine).
EXTRAS ?=
STAMP = $(VENV)/.effcourse-installed
TEST_STAMP = $(VENV)/.effcourse-test-installed
SUPPORTED = import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
# Offline rooms: `make wheelhouse` fills WHEELHOUSE with every wheel the course needs; when it
# holds wheels, `make venv` installs from it alone (no network). WHEEL_PLATFORM (pip platform
# tags) and PY (e.g. 311) download for another machine than this one, resolving that
# machine's own dependencies (Windows-only packages included).
WHEELHOUSE ?= wheelhouse
WHEEL_PLATFORM ?=
PY ?=
WHEEL_EXTRAS ?=
OFFLINE = $(if $(wildcard $(WHEELHOUSE)/*.whl), --no-index --find-links $(WHEELHOUSE))
PIP_INSTALL = $(BIN)/python -m pip install --quiet$(OFFLINE) -c $(CONSTRAINTS)

.PHONY: venv test-venv wheelhouse lock prepare course test unit notebooks lint format lab student nbfix nbcheck clean

venv: $(STAMP)
test-venv: $(TEST_STAMP)

# A .venv whose install did not finish (no stamp) or whose Python is not 3.10-3.12 is
# rebuilt from scratch with PYTHON, which must itself be 3.10-3.12 (else: the message and the
# fix); a finished one is updated in place when pyproject.toml or the constraints change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@if [ ! -f $(STAMP) ] || ! $(BIN)/python -c '$(SUPPORTED)' 2>/dev/null; then \
		$(PYTHON) -c '$(SUPPORTED)' 2>/dev/null || { \
			echo "effcourse needs Python 3.10, 3.11 or 3.12 (TensorFlow 2.21's range); PYTHON=$(PYTHON) is" \
				"$$($(PYTHON) --version 2>&1 | tail -n 1)." >&2; \
			echo "Fix: install one (python.org; macOS: brew install python@3.12; Debian/Ubuntu:" \
				"apt-get install python3.11 python3.11-venv; or conda), then: make venv PYTHON=python3.12" >&2; \
			exit 1; }; \
		echo "Creating $(VENV) with $(PYTHON)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet$(OFFLINE) --upgrade pip
	$(PIP_INSTALL) -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(STAMP)

# The course's test tools on top (pytest, nbval, playwright, ruff, uv): every target below
# that tests, lints, locks or builds a wheelhouse.
$(TEST_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[test$(if $(EXTRAS),$(comma)$(EXTRAS))]'
	touch $(TEST_STAMP)
comma := ,

# Every wheel `make venv` installs (the learner set, pip and the build backend; WHEEL_EXTRAS=test
# adds the test tools) at the locked versions, for this machine or for WHEEL_PLATFORM/PY, e.g.
# WHEEL_PLATFORM=win_amd64 PY=311, WHEEL_PLATFORM=macosx_14_0_arm64 PY=312. The other platform's
# dependency set is resolved with uv (its markers: pywinpty and colorama on Windows), then
# downloaded. About 1 GB; copy the course folder with wheelhouse/ to each machine and run
# make venv there without the internet.
wheelhouse: $(TEST_STAMP)
	$(BIN)/python -m effcourse.wheelhouse $(strip --dest $(WHEELHOUSE) $(foreach p,$(WHEEL_PLATFORM),--platform $(p)) \
		$(if $(PY),--python-version $(PY)) $(foreach e,$(WHEEL_EXTRAS),--extra $(e)))

# Refresh the constraints file: the newest versions within pyproject's ranges, resolved with
# uv for every platform and Python 3.10-3.12 at once (markers where they differ). Then run
# `make test` (CI does) before committing it.
lock: $(TEST_STAMP)
	$(BIN)/python -m uv pip compile pyproject.toml --universal --python-version 3.10 --extra test \
		--extra gpu --annotation-style line --custom-compile-command "make lock" --upgrade -o $(CONSTRAINTS)

# Before a workshop, on each machine: download and verify MNIST, train and cache the three
# baselines (full profile: 6-13 minutes on a 2-core CPU), then run the doctor (exit 0 when ready).
prepare: $(STAMP)
	EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} $(BIN)/python -m effcourse.prepare

# Execute every notebook in order under EFFCOURSE_PROFILE (default full): HTML in build/html/.
course: $(STAMP)
	EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} $(BIN)/python -m effcourse.course

# Lint first (seconds), then the unit tests, every notebook under nbval and the browser
# test, all with the quick profile. This is what CI runs.
test: $(TEST_STAMP) lint
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tests notebooks

# Only the unit tests (no notebooks, no browser): about 5 minutes.
unit: $(TEST_STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q -m "not browser" tests

# Only the notebooks under nbval, quick profile.
notebooks: $(TEST_STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks

# ruff: lint and formatting check of the package, the tests and the notebooks' code.
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/python -m effcourse.nbsource --fix

# Only the browser test (part of `make test`): notebooks 00 and 01 run in JupyterLab in
# headless Chromium (apt-get install -y chromium); screenshots in build/screenshots/.
.PHONY: test-browser
test-browser: $(TEST_STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q -rs -m browser tests/browser

# JupyterLab rooted at the course folder (notebooks/ and build/student/ both reachable),
# opened on notebooks/. Many classroom containers run as root: only then --allow-root.
lab: $(STAMP)
	@echo "JupyterLab: kernels use EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} (make lab PROFILE=quick for short runs); student copies: build/student/ (make student)"
	EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} $(BIN)/jupyter lab --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/notebooks $$(test "$$(id -u)" = 0 && echo --allow-root)

# The notebooks are their own source: normalise after editing (outputs, metadata, ids).
nbfix: $(STAMP)
	$(BIN)/python -m effcourse.nbsource --fix

nbcheck: $(STAMP)
	$(BIN)/python -m effcourse.nbsource --check

# Solution-free copies for a workshop, in build/student/, and build/student.zip to hand out
# (the student notebooks, the package and a README for students).
student: $(STAMP)
	$(BIN)/python -m effcourse.student --out build/student

# The setup doctor: versions, Keras 2 mode, data, CPU units, GPUs, what each notebook will
# use here, every problem with its fix. Run it first; exit status 1 if the course cannot run.
.PHONY: doctor
doctor: $(STAMP)
	$(BIN)/python -m effcourse.doctor

clean:
	rm -rf build
