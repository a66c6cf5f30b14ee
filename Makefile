# `make demo`: the main job on the embedded synthetic default.
# `make test`: the test suite. Each sets up its own venv (idempotent).
# `make photos`: the real test photos, fetched from the package registry
#   (pip download of face-recognition's sdist, scikit-image and matplotlib
#   wheels) into .cache/photos; `make test` runs it first. Without them the
#   real-photo tests skip and say why.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip install --disable-pip-version-check -q

PHOTOS  = .cache/photos
TEST_WORKERS ?= 2   # pytest-xdist workers; each test file runs whole on one (tests/conftest.py)

.PHONY: demo test photos clean-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt $(VENV)/.runtime
	$(PIP) -r requirements-test.txt
	touch $@

demo: $(VENV)/.runtime
	$(PY) -m facetrack_jax.main $(ARGS)

$(PHOTOS)/.fetched: $(VENV)/.runtime
	$(PY) -m data_prep.realphoto_sources --fetch $(PHOTOS) && touch $@ \
	  || echo "real photos not fetched: the real-photo tests will skip"

photos: $(PHOTOS)/.fetched

test: $(VENV)/.test $(PHOTOS)/.fetched
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests $(ARGS)

clean-venv:
	rm -rf $(VENV)
