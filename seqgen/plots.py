"""Pictures: loss curves of runs side by side, and the piano roll of a piece (matplotlib).

matplotlib is an optional extra (``pip install 'seqgen[plot]'``) imported inside the functions,
so importing this module costs nothing. Figures are made with ``matplotlib.figure.Figure``
(Agg canvas, no pyplot, no global state) and written through ``seqgen.fileio.atomic_path``:
a reader never sees half a picture. Sizes are in pixels at ``DPI`` dots per inch, so the file
has exactly the size asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seqgen.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from seqgen.history import Curve
    from seqgen.music.piece import Piece

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 100
CURVES_SIZE = (1000, 600)
ROLL_SIZE = (1400, 600)
LN2 = math.log(2)
# General MIDI families, eight programs each
GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
               "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")
X_LABELS = {"steps": "optimizer steps", "tokens": "tokens seen (step x batch x window)"}


def image_format(path: Path | str) -> str:
    """'png', 'svg' or 'pdf' from the file name, else a ConfigError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"cannot draw {Path(path).name!r}: expected a .png, .svg or .pdf file name")
    return FORMATS[suffix]


def parse_size(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """'900x550' -> (900, 550) pixels."""
    if text is None:
        return default
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"cannot read size {text!r}; expected WIDTHxHEIGHT in pixels, e.g. 1000x600") from None
    if not (100 <= w <= 10000 and 100 <= h <= 10000):
        raise ConfigError(f"size {text} is out of range; expected 100 to 10000 pixels each way")
    return w, h


def require_matplotlib() -> None:
    """Fail early, with the install line, when the ``plot`` extra is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("drawing pictures needs matplotlib: pip install 'seqgen[plot]'")


def _figure(size: tuple[int, int]):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    from seqgen.fileio import atomic_path

    fmt = image_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI)
    return Path(path)


# ---- loss curves ---------------------------------------------------------------------------


def _time_scale(seconds: float) -> tuple[float, str]:
    if seconds < 180:
        return 1.0, "seconds"
    if seconds < 3 * 3600:
        return 60.0, "minutes"
    return 3600.0, "hours"


def loss_curves(curves: Sequence[Curve], path: Path | str, x: str = "steps", size: tuple[int, int] = CURVES_SIZE,
                title: str | None = None, train: bool = True) -> Path:
    """Validation loss (solid, dots at each evaluation) and training loss (dashed) of each run
    against steps, training time or tokens seen; one colour per run, its best point starred.
    The left axis is in nats per token, the right in bits per token."""
    if x not in ("steps", "time", "tokens"):
        raise ConfigError(f"--x must be steps, time or tokens, got {x!r}")
    image_format(path)
    fig = _figure(size)
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    ax = fig.add_subplot()
    colors = [c["color"] for c in _cycle(fig)]
    scale, unit = 1.0, ""
    if x == "time":
        longest = max((max((v for v in c.elapsed if not math.isnan(v)), default=0.0) for c in curves), default=0.0)
        scale, unit = _time_scale(longest)
    handles = []
    for i, c in enumerate(curves):
        color = colors[i % len(colors)]
        xs = [None if v is None else v / scale for v in c.x(x)]
        if any(v is None for v in xs):
            raise ConfigError(f"{c.name}: tokens seen are unknown (its config.json lacks batch or window); "
                              "use --x steps or time")
        best_bits = c.val_loss[c.best] / LN2
        (line,) = ax.plot(xs, c.val_loss, "-o", color=color, lw=2, ms=3.5,
                          label=f"{c.name}: best {c.val_loss[c.best]:.3f} nats ({best_bits:.3f} bits)")
        handles.append(line)
        if train:
            pts = [(a / scale, b) for a, b in c.train_points(x)]
            if pts:
                ax.plot(*zip(*pts), "--", color=color, lw=1.2, alpha=0.7)
        bx, by = xs[c.best], c.val_loss[c.best]
        ax.plot([bx], [by], marker="*", ms=16, color=color, mec="black", mew=0.8, zorder=5)
        ax.annotate(f"{by:.3f}", (bx, by), xytext=(-9, -15), textcoords="offset points", fontsize=9, color=color,
                    ha="right")
    ax.set_xlabel(f"training time ({unit})" if x == "time" else X_LABELS[x])
    if x == "tokens":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_ylabel("loss (nats per token)")
    sec = ax.secondary_yaxis("right", functions=(lambda n: n / LN2, lambda b: b * LN2))
    sec.set_ylabel("bits per token")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0, right=ax.get_xlim()[1] * 1.02)
    ax.set_title(title or ("Loss curves" if len(curves) > 1 else f"Loss curve of {curves[0].name}"))
    runs_legend = ax.legend(handles=handles, loc="upper right", fontsize=9, title="run (validation loss)",
                            title_fontsize=9)
    ax.add_artist(runs_legend)
    style = [Line2D([], [], color="0.3", lw=2, marker="o", ms=3.5, label="validation (each evaluation)"),
             Line2D([], [], color="0.3", lw=1.2, ls="--", label="training (moving average)"),
             Line2D([], [], color="0.3", lw=0, marker="*", ms=12, mec="black", label="best validation loss")]
    ax.legend(handles=style if train else style[::2], loc="lower left", fontsize=8, framealpha=0.8)
    return _save(fig, Path(path))


def _cycle(fig):
    import matplotlib as mpl

    return list(mpl.rcParams["axes.prop_cycle"])


# ---- piano roll ----------------------------------------------------------------------------


def bar_ticks(piece: Piece) -> list[int]:
    """Bar starts in ticks: the decoder's own when it recorded them, else from the time signatures."""
    end = max(piece.end, 1)
    starts = [int(b) for b in piece.info.get("bar_starts", []) if 0 <= b <= end]
    if starts:
        return starts
    sigs = sorted((int(t), int(n), int(d)) for t, n, d in piece.time_sigs) or [(0, 4, 4)]
    if sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    starts, tick, k = [], 0, 0
    while tick < end and len(starts) < 100_000:
        while k + 1 < len(sigs) and sigs[k + 1][0] <= tick:
            k += 1
        starts.append(tick)
        _, num, den = sigs[k]
        tick += max(1, round(piece.tpq * 4 * num / max(den, 1)))
    return starts


def instrument_name(program: int) -> str:
    from seqgen.music.piece import DRUMS

    if program == DRUMS:
        return "drums"
    return f"program {program} ({GM_FAMILIES[program // 8]})"


def piano_roll(piece: Piece, path: Path | str, size: tuple[int, int] = ROLL_SIZE, title: str | None = None) -> Path:
    """The piece as a picture: one bar per note (pitch up, time right, in bars), one colour per
    instrument, pitch names on the left axis with the black-key rows shaded, bar lines."""
    import numpy as np

    from seqgen.music.piece import DRUMS
    from seqgen.music.stats import pitch_name

    image_format(path)
    fig = _figure(size)
    ax = fig.add_subplot()
    q = float(piece.tpq)
    end = max(piece.end, piece.tpq * 4)
    if len(piece):
        lo, hi = int(piece.pitch.min()) - 1, int(piece.pitch.max()) + 1
    else:
        lo, hi = 59, 73
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="0.5")
    for p in range(lo, hi + 1):
        if p % 12 in (1, 3, 6, 8, 10):
            ax.axhspan(p - 0.5, p + 0.5, color="0.93", lw=0, zorder=0)
    programs = sorted({int(v) for v in piece.program})
    colors = [c["color"] for c in _cycle(fig)]
    if len(programs) > len(colors):
        import matplotlib as mpl

        colors = list(mpl.colormaps["tab20"].colors)
    for i, prog in enumerate(programs):
        m = piece.program == prog
        alpha = 0.45 + 0.55 * np.clip(piece.velocity[m] / 127.0, 0, 1)
        color = "0.35" if prog == DRUMS else colors[i % len(colors)]
        drawn = ax.barh(piece.pitch[m], piece.duration[m] / q, left=piece.time[m] / q, height=0.8, color=color,
                        edgecolor="none", label=instrument_name(prog), zorder=2)
        for patch, a in zip(drawn.patches, alpha):  # velocity as opacity (barh takes one alpha)
            patch.set_alpha(float(a))
    bars = bar_ticks(piece)
    for b in bars:
        ax.axvline(b / q, color="0.55" if len(bars) <= 64 else "0.75", lw=0.8 if len(bars) <= 64 else 0.5, zorder=1)
    every = max(1, math.ceil(len(bars) / 32))
    ax.set_xticks([b / q for b in bars[::every]], [str(i + 1) for i in range(0, len(bars), every)])
    ax.set_xlabel("bar" + (f" (every {every}th labelled)" if every > 1 else ""))
    named = (0, 4, 7) if hi - lo <= 26 else (0,)  # C, E and G in a small range, else the Cs
    cs = [p for p in range(lo, hi + 1) if p % 12 in named]
    step = max(1, math.ceil(len(cs) / 10))
    ticks = cs[::step]
    for edge in (lo + 1, hi - 1):  # the lowest and highest notes, where no C label is near
        if len(piece) and all(abs(edge - t) >= 3 for t in ticks):
            ticks = sorted({*ticks, edge})
    ax.set_yticks(ticks, [pitch_name(p) for p in ticks])
    ax.set_yticks(range(lo, hi + 1), minor=True)
    ax.tick_params(axis="y", which="minor", length=2)
    ax.set_ylabel("pitch")
    ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_xlim(0, end / q)
    if programs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="instrument", title_fontsize=9)
    ax.set_title(title or piece.name or "piano roll")
    return _save(fig, Path(path))
