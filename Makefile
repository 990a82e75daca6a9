# The course's commands. `make test` and `make course` work on a fresh machine with
# only Python 3.10-3.12 and make: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= full
BIN = $(VENV)/bin
STAMP = $(VENV)/.effcourse-installed
# Offline rooms: `make wheelhouse` fills WHEELHOUSE with every wheel the course needs; when it
# holds wheels, `make venv` installs from it alone (no network). WHEEL_PLATFORM (one or more
# pip platform tags) and PY (e.g. 311) download for another machine than this one.
WHEELHOUSE ?= wheelhouse
WHEEL_PLATFORM ?=
PY ?=
OFFLINE = $(if $(wildcard $(WHEELHOUSE)/*.whl), --no-index --find-links $(WHEELHOUSE))
WHEEL_TARGET = $(if $(WHEEL_PLATFORM), --only-binary=:all: $(foreach p,$(WHEEL_PLATFORM),--platform $(p)))$(if $(PY), --python-version $(PY))

.PHONY: venv wheelhouse course test unit notebooks lint format lab student nbfix nbcheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet$(OFFLINE) --upgrade pip
	$(BIN)/python -m pip install --quiet$(OFFLINE) -e '.[dev]' && touch $(STAMP)

# Every wheel `make venv` installs (the course, its dev tools, pip and the build backend),
# for this machine or for WHEEL_PLATFORM/PY, e.g. WHEEL_PLATFORM=manylinux_2_28_x86_64 PY=311,
# WHEEL_PLATFORM=win_amd64, WHEEL_PLATFORM=macosx_12_0_arm64. About 1 GB; copy the course
# folder with wheelhouse/ to each machine and run make venv there without the internet.
wheelhouse:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip download --dest $(WHEELHOUSE)$(WHEEL_TARGET) '.[dev]' pip 'setuptools>=77' wheel

# Execute every notebook in order under EFFCOURSE_PROFILE (default full): HTML in build/html/.
course: $(STAMP)
	EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} $(BIN)/python -m effcourse.course

# Lint first (seconds), then the unit tests, every notebook under nbval and the browser
# test, all with the quick profile. This is what CI runs.
test: $(STAMP) lint
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tests notebooks

# Only the unit tests (no notebooks, no browser): about 5 minutes.
unit: $(STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q -m "not browser" tests

# Only the notebooks under nbval, quick profile.
notebooks: $(STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks

# ruff: lint and formatting check of the package, the tests and the notebooks' code.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/python -m effcourse.nbsource --fix

# Only the browser test (part of `make test`): notebooks 00 and 01 run in JupyterLab in
# headless Chromium (apt-get install -y chromium); screenshots in build/screenshots/.
.PHONY: test-browser
test-browser: $(STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q -rs -m browser tests/browser

# JupyterLab rooted at the course folder (notebooks/ and build/student/ both reachable),
# opened on notebooks/. Many classroom containers run as root: only then --allow-root.
lab: $(STAMP)
	@echo "JupyterLab: kernels use EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} (EFFCOURSE_PROFILE=quick make lab for short runs); student copies: build/student/ (make student)"
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
	$(BIN)/python -m effcourse.student build/student

# The setup doctor: versions, Keras 2 mode, data, CPU units, GPUs, what each notebook will
# use here, every problem with its fix. Run it first; exit status 1 if the course cannot run.
.PHONY: doctor
doctor: $(STAMP)
	$(BIN)/python -m effcourse.doctor

clean:
	rm -rf build
