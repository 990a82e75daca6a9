# The course's commands. `make test` and `make course` work on a fresh machine with
# only Python 3.10-3.12 and make: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= full
BIN = $(VENV)/bin
STAMP = $(VENV)/.effcourse-installed

.PHONY: venv course test lab student nbfix nbcheck clean

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

# Solution-free copies for a workshop, in build/student/.
student: $(STAMP)
	$(BIN)/python -m effcourse.student build/student

clean:
	rm -rf build
