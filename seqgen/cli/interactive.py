"""``seqgen sample --interactive``: the model loaded once, prompts read line by line, each answer
streamed. Lines starting with ``/`` change the options for the answers that follow."""

from __future__ import annotations

import sys

from seqgen.cli._options import unescape
from seqgen.cli._util import err, error_line

HELP = """commands (the rest of a line is a prompt; \\n in it is a newline, \\t a tab):
  /temp X        temperature (0 = greedy)          /length N    tokens per answer
  /top-k N|off   /top-p X|off   /min-p X|off        /penalty X   repetition penalty (1 = off)
  /window N      tokens the penalty looks back over  /ngram N|off never repeat an n-gram of N tokens
  /stop TEXT     add a stop string (/stop alone clears them)
  /seed N        restart the random numbers         /show        the current options
  /help          this list                          /quit        end (so do Ctrl-D and Ctrl-C at the prompt)
Ctrl-C during an answer stops that answer."""

# command -> (option field, parser); "off" gives None
FIELDS = {"/temp": ("temperature", float), "/top-k": ("top_k", int), "/top-p": ("top_p", float),
          "/min-p": ("min_p", float), "/penalty": ("repetition_penalty", float), "/window": ("repeat_window", int),
          "/ngram": ("no_repeat_ngram", int)}


def _readline() -> None:
    """Line editing and history where the terminal has them (GNU readline or libedit)."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - importing it gives input() editing and history
        except ImportError:
            pass


def prompt_loop(gen, options, length: int, stops: tuple[str, ...], rng) -> None:
    import numpy as np

    from seqgen.errors import SeqgenError
    from seqgen.sampling import check_stops, complete_text

    _readline()
    tty = sys.stdin.isatty()
    err.print(f"[dim]{gen.source}: type a prompt and press Enter; /help for commands, Ctrl-D to end[/]",
              soft_wrap=True)
    stops = list(stops)
    write = sys.stdout.write

    def stream(_row: int, piece: str) -> None:
        write(piece)
        sys.stdout.flush()

    while True:
        try:
            line = input("> " if tty else "")
        except (EOFError, KeyboardInterrupt):
            if tty:
                err.print()
            return
        if not line.strip():
            continue
        if line.startswith("/"):
            name, _, arg = line.strip().partition(" ")
            arg = arg.strip()
            try:
                if name in ("/quit", "/exit"):
                    return
                if name == "/help":
                    err.print(HELP, markup=False, highlight=False)
                elif name == "/show":
                    shown = ", ".join(f"{k}={v}" for k, v in options.to_dict().items())
                    err.print(f"{shown}, length={length}, stop={stops}", markup=False, highlight=False)
                elif name == "/length":
                    if not arg.isdigit() or int(arg) < 1:
                        raise SeqgenError(f"/length takes a whole number of tokens >= 1, got {arg!r}")
                    length = int(arg)
                elif name == "/seed":
                    if not arg.lstrip("-").isdigit():
                        raise SeqgenError(f"/seed takes a whole number, got {arg!r}")
                    rng = np.random.default_rng(int(arg))
                elif name == "/stop":
                    stops = list(check_stops([unescape(arg)])) + stops if arg else []
                elif name in FIELDS:
                    field, kind = FIELDS[name]
                    try:
                        value = None if arg == "off" else kind(arg)
                    except ValueError:
                        off = "" if field in ("temperature", "repeat_window", "repetition_penalty") else " or off"
                        raise SeqgenError(
                            f"{name} takes a {'whole number' if kind is int else 'number'}{off}, got {arg!r}"
                        ) from None
                    if value is None and field == "repetition_penalty":
                        value = 1.0
                    options = options.replace(**{field: value})
                else:
                    raise SeqgenError(f"unknown command {name}; /help lists them")
            except SeqgenError as e:
                error_line(str(e))
            continue
        text = unescape(line)
        try:
            ids = gen.tokenizer.encode(text)
            complete_text(gen, ids, length, options, rng, stops=tuple(stops), on_text=stream)
        except KeyboardInterrupt:
            pass
        except SeqgenError as e:
            error_line(str(e))
            continue
        write("\n")
        sys.stdout.flush()
