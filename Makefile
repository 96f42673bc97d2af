PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: install dev run test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e .
	$(BIN)/pip install --no-deps tinysoundfont==0.3.7  # audio; its pyaudio dependency is for playback only
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

# The main job: train a character model on the built-in folk-tune corpus (ABC notation)
# for about a minute, print a sampled tune, then a short Bach-chorale MIDI run that composes
# (and renders the chorale to a WAV when a SoundFont is installed).
# Each time it starts afresh: the two run folders are this job's own, not kept from the last time.
run: install
	rm -rf runs/folk-abc runs/bach
	$(BIN)/seqgen train folk-abc --time 60s --out runs/folk-abc
	$(BIN)/seqgen sample runs/folk-abc --temp 0.8 --length 600 --prompt "X:1"
	$(BIN)/seqgen train bach-chorales --time 60s --out runs/bach
	$(BIN)/seqgen compose runs/bach --bars 8 --out runs/bach/chorale.mid
	@if $(BIN)/python -c "from seqgen.music.audio import find_soundfont; find_soundfont()" 2>/dev/null; then \
		$(BIN)/seqgen render runs/bach/chorale.mid runs/bach/chorale.wav; \
	else \
		echo "no SoundFont for a WAV of the chorale: sudo apt-get install timgm6mb-soundfont (or set SEQGEN_SOUNDFONT), then seqgen render runs/bach/chorale.mid runs/bach/chorale.wav"; \
	fi

test: dev
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/train_budget.py --time 3m

clean:
	rm -rf $(VENV) runs build *.egg-info
