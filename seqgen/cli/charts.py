"""Line charts for the terminal, drawn with braille dots (2 x 4 per character) in rich colours.

Used at the end of ``seqgen train`` and by ``seqgen plot`` without ``--out``: loss against
steps, time or tokens, one colour per line, the best validation point marked with a diamond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rich.console import Console, Group
from rich.text import Text

# dot (column, row) inside a cell -> braille bit
_BITS = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (1, 0): 0x08, (1, 1): 0x10, (1, 2): 0x20, (0, 3): 0x40, (1, 3): 0x80}
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")
BEST_MARK = "\u25c6"  # diamond
LN2 = math.log(2)


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    style: str


@dataclass
class Mark:
    x: float
    y: float
    style: str


def _fmt_num(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def line_chart(series: Sequence[Series], width: int = 60, height: int = 10, marks: Sequence[Mark] = (),
               x_label: str = "", y_label: str = "", x_fmt: Callable[[float], str] = _fmt_num,
               y_fmt: Callable[[float], str] | None = None) -> Group:
    """A chart ``width`` x ``height`` characters (plus axes), lines in the order given (later on top)."""
    pts = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if _finite(x) and _finite(y)]
    if not pts:
        return Group(Text("(nothing to draw)", style="dim"))
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x0 = min(x0, 0.0) if x0 >= 0 else x0
    if x1 == x0:
        x1 = x0 + 1.0
    pad = (y1 - y0) * 0.05 or 0.05
    y0, y1 = y0 - pad, y1 + pad
    W, H = width * 2, height * 4
    bits = [[0] * width for _ in range(height)]
    owner: list[list[str | None]] = [[None] * width for _ in range(height)]

    def px(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * (W - 1), (y1 - y) / (y1 - y0) * (H - 1)

    def dot(cx: int, cy: int, style: str) -> None:
        if 0 <= cx < W and 0 <= cy < H:
            r, c = cy // 4, cx // 2
            bits[r][c] |= _BITS[(cx % 2, cy % 4)]
            owner[r][c] = style

    for s in series:
        line = [px(x, y) for x, y in zip(s.xs, s.ys) if _finite(x) and _finite(y)]
        if len(line) == 1:
            dot(round(line[0][0]), round(line[0][1]), s.style)
        for (ax, ay), (bx, by) in pairwise(line):
            n = max(1, int(max(abs(bx - ax), abs(by - ay))))
            for i in range(n + 1):
                t = i / n
                dot(round(ax + (bx - ax) * t), round(ay + (by - ay) * t), s.style)
    cells: list[list[tuple[str, str | None]]] = [
        [(chr(0x2800 + bits[r][c]) if bits[r][c] else " ", owner[r][c]) for c in range(width)] for r in range(height)]
    for m in marks:
        if _finite(m.x) and _finite(m.y):
            cx, cy = px(m.x, m.y)
            r, c = min(height - 1, max(0, round(cy) // 4)), min(width - 1, max(0, round(cx) // 2))
            cells[r][c] = (BEST_MARK, f"bold {m.style}")

    y_fmt = y_fmt or (lambda v: f"{v:.3f}" if y1 - y0 < 10 else _fmt_num(v))
    label_rows = {r: y1 - (y1 - y0) * (r * 4 + 1.5) / (H - 1) for r in (0, height // 2, height - 1)}
    gutter = max(len(y_fmt(v)) for v in label_rows.values()) + 1
    lines = []
    if y_label:
        lines.append(Text(" " * max(0, gutter - 1) + y_label, style="dim"))
    for r in range(height):
        row = Text(f"{y_fmt(label_rows[r]):>{gutter - 1}} " if r in label_rows else " " * gutter, style="dim")
        row.append("\u2524" if r in label_rows else "\u2502", style="dim")
        for ch, style in cells[r]:
            row.append(ch, style=style)
        lines.append(row)
    lines.append(Text(" " * gutter + "\u2514" + "\u2500" * width, style="dim"))
    left, mid, right = x_fmt(x0), x_fmt((x0 + x1) / 2), x_fmt(x1)
    axis = [" "] * (width + 1)
    for pos, text in ((0, left), ((width - len(mid)) // 2, mid), (width + 1 - len(right), right)):
        for i, ch in enumerate(text):
            if 0 <= pos + i < len(axis):
                axis[pos + i] = ch
    lines.append(Text(" " * gutter + "".join(axis), style="dim"))
    if x_label:
        lines.append(Text(" " * gutter + f"{x_label:^{width}}".rstrip(), style="dim"))
    return Group(*lines)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# ---- loss charts of runs -------------------------------------------------------------------


def _axis(curves, x: str) -> tuple[Callable[[float], str], str]:
    if x == "time":
        return fmt_clock, "training time (m:ss)"
    if x == "tokens":
        return _fmt_num, "tokens seen"
    return _fmt_num, "steps"


def loss_chart(curves, x: str = "steps", width: int = 60, height: int = 10) -> Group:
    """One run: training loss (grey) and validation loss; several runs: validation loss of each,
    one colour per run. The best validation point of each run is a diamond. A legend follows."""
    from seqgen.errors import ConfigError

    fmt, x_label = _axis(curves, x)
    series, marks, legend = [], [], Text()
    for i, c in enumerate(curves):
        xs = list(c.x(x))
        if any(v is None for v in xs):
            raise ConfigError(f"{c.name}: tokens seen are unknown (its config.json lacks batch or window); "
                              "use --x steps or time")
        style = COLORS[i % len(COLORS)]
        best_x, best_v = xs[c.best], c.val_loss[c.best]
        if len(curves) == 1:
            tr = c.train_points(x)
            if tr:
                series.append(Series("training", [a for a, _ in tr], [b for _, b in tr], "bright_black"))
                legend.append("\u2501 training (moving average)  ", style="bright_black")
            series.append(Series("validation", xs, c.val_loss, style))
            legend.append("\u2501 validation  ", style=style)
        else:
            series.append(Series(c.name, xs, c.val_loss, style))
            legend.append(f"\u2501 {c.name} ", style=style)
        marks.append(Mark(best_x, best_v, style))
        at = {"steps": f"step {fmt(best_x)}", "time": fmt(best_x), "tokens": f"{fmt(best_x)} tokens"}[x]
        legend.append(f"{BEST_MARK} best {best_v:.3f} nats ({best_v / LN2:.3f} bits) at {at}" +
                      ("   " if i < len(curves) - 1 else ""), style=style)
    chart = line_chart(series, width=width, height=height, marks=marks, x_label=x_label,
                       y_label="loss (nats per token)", x_fmt=fmt)
    return Group(chart, legend)


def chart_width(console: Console, cap: int = 72) -> int:
    return max(30, min(cap, console.width - 12))


def training_chart(run_dir, console: Console) -> None:
    """The chart ``seqgen train`` shows when it ends: the whole run (resumed parts included),
    against time for a time budget and steps otherwise. Never fails the command."""
    from seqgen.errors import SeqgenError
    from seqgen.history import load_run

    try:
        run = load_run(run_dir)
        if not run.metrics.records:
            console.print(f"[dim]no evaluations to chart yet ({run.no_evaluations()})[/]", highlight=False)
            return
        x = "time" if run.train.get("time") else "steps"
        console.print(loss_chart([run.curve()], x=x, width=chart_width(console)))
        for p in run.problems:
            console.print(f"[yellow]{p}[/]", highlight=False)
    except SeqgenError as e:
        console.print(f"[dim]no chart: {e}[/]", highlight=False)
