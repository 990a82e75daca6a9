# The course's commands. `make test` and `make course` work on a fresh machine with
# only Python 3.10-3.12 and make: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= full
BIN = $(VENV)/bin
STAMP = $(VENV)/.effcourse-installed

.PHONY: venv course test unit notebooks lab student clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' && touch $(STAMP)

# Execute every notebook in order under EFFCOURSE_PROFILE (default full): HTML in build/html/.
course: $(STAMP)
	EFFCOURSE_PROFILE=$${EFFCOURSE_PROFILE:-$(PROFILE)} $(BIN)/python -m effcourse.course

# Unit tests, then every notebook under nbval, all with the quick profile.
test: $(STAMP)
	EFFCOURSE_PROFILE=quick $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tests notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Solution-free copies for a workshop, in build/student/.
student: $(STAMP)
	$(BIN)/python -m effcourse.student build/student

clean:
	rm -rf build
