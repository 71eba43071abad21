# Every user-facing target installs what it needs first, so each one is a complete set-up
# on a fresh clone. The stamp files re-run the install when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATE   ?=
DATE_ARG := $(if $(DATE),--date $(DATE),)

.PHONY: install install-test daily rank test bench clean screenshot

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

daily: install
	$(BIN)/pipeline daily $(DATE_ARG)

test: install-test
	$(BIN)/python -m pytest -q -n 2 tests

bench: install-test
	$(BIN)/python -m tools.bench $(BENCH_ARGS)
	$(BIN)/python -m tools.bench_replay $(BENCH_REPLAY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# docs/report.png, the README picture (and docs/report_event.png, the top event's section): a real `pipeline daily` of the default synthetic universe
# on SHOT_DATE into its own data root, rendered by headless Chromium (apt-get install chromium).
SHOT_DATE ?= 2026-11-20
SHOT_ROOT := build/screenshot
screenshot: install
	$(BIN)/pipeline --data-dir $(SHOT_ROOT) daily --date $(SHOT_DATE) >/dev/null
	$(BIN)/python -m tools.screenshot $(SHOT_ROOT)/reports/rank_$(SHOT_DATE).html docs/report.png --width 1400 --height 1500
	$(BIN)/python -m tools.screenshot $(SHOT_ROOT)/reports/rank_$(SHOT_DATE).html docs/report_event.png \
		--width 1400 --height 700 --section 1
