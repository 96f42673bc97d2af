"""seqgen train: train a generator on a corpus, with a progress bar; saves runs/<name>/.

The options that set the training configuration are made from ``TrainConfig``'s fields (their
defaults and help texts live there once); this module adds only what is not configuration
(the corpus, the run folder, --resume, --quiet, --encoding).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import shlex
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rich.markup import escape

from seqgen.cli._util import corpus_feedback, err
from seqgen.config import TrainConfig
from seqgen.records import EvalRecord, StartInfo, StepRecord

DEFAULT_TIME = "5m"
CHOSEN_STOP = ("patience", "stop_below", "stop_rise")  # a resume keeps these unless the command gives them


class ProgressCallback:
    """Draws a rich progress bar on stderr: step, loss, validation bits/token, tokens/s, time left."""

    def __init__(self, quiet: bool):
        from rich.progress import BarColumn, Progress, TextColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.fields[step]:>6}[/]"), BarColumn(bar_width=24),
            TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[stats]}"),
            console=err, transient=False, disable=quiet, refresh_per_second=4,
        )
        self.task = None
        self.last_val = self.best = self.best_step = None
        self.rising = False

    def on_start(self, info: StartInfo):
        for note in info.notes:  # shown even when quiet: the user should know
            err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
        if not self.quiet:
            cfg = info.config
            mode = "truncated BPTT" if info.stream else "random windows"
            err.print(
                f"[dim]{cfg.model} ({info.params:,} parameters) on {info.device}, "
                f"{info.train_tokens:,} training / {info.val_tokens:,} validation tokens, "
                f"objective {cfg.objective}, batch {cfg.batch} x {cfg.window} ({mode})[/]"
            )
            for name, why in info.choices.items():
                err.print(f"[dim]  {name.replace('_', '-')} {escape(why)}[/]", soft_wrap=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=1.0, step=info.step, stats="")

    def on_step(self, r: StepRecord):
        if self.quiet:
            return
        left = r.elapsed / max(r.progress, 1e-9) * (1 - r.progress) if r.progress > 0 else 0
        val = f"val {self.last_val / math.log(2):.3f} bits" if self.last_val is not None else "val -"
        if self.rising:
            val += f" (best {self.best / math.log(2):.3f} at step {self.best_step}, getting worse)"
        stats = f"loss {r.loss:.3f}  {val}  {r.tokens_per_s:,.0f} tok/s  {_clock(left)} left"
        self.progress.update(self.task, completed=r.progress, step=r.step, stats=stats)

    def on_eval(self, r: EvalRecord):
        self.last_val, self.best, self.best_step = r.val_loss, r.best_val_loss, r.best_step
        self.rising = not r.best and self.best is not None and self.last_val > self.best + 0.01

    def stop(self):
        self.progress.stop()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def train(
    corpus: str,
    out: Optional[Path] = None,
    encoding: str = "utf-8",
    resume: bool = False,
    quiet: bool = False,
    launch_config: Optional[Path] = None,
    init: Optional[Path] = None,
    **options: Any,
) -> None:
    """Train a generator on CORPUS. Ctrl-C, SIGTERM or SIGHUP save a checkpoint and print how to resume."""
    from seqgen.errors import ConfigError
    from seqgen.runs import run_lock

    if init is not None and resume:
        raise ConfigError("--init starts a new run from another run's weights; --resume continues the run in --out: "
                          "give one of them")

    values = _config_values(options) if launch_config is None else _read_launch(launch_config)
    if values["time"] is None and values["steps"] is None and not resume:
        values["time"] = _FIELDS["time"].metadata["parse"](DEFAULT_TIME)
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN, the run folder to continue")
    from seqgen.distributed import in_launched_process

    if in_launched_process():
        _train_as_rank(corpus, out, encoding, resume, quiet, values, init)
        return
    if values["devices"] > 1:
        _launch(corpus, out, encoding, resume, quiet, values, init)
        return
    if out is not None:
        with run_lock(out):
            _train(corpus, out, encoding, resume, quiet, values, init=init)
        return
    from seqgen.data.load import load_corpus
    from seqgen.runs import new_run_dir

    with corpus_feedback(quiet) as feedback:
        data = load_corpus(corpus, encoding=encoding, **feedback)
    out = new_run_dir(data.source or "run")
    try:
        with run_lock(out):
            _train(corpus, out, encoding, resume, quiet, values, data, init=init)
    except BaseException:
        _remove_if_unused(out)
        raise


def _launch(corpus: str, out: Optional[Path], encoding: str, resume: bool, quiet: bool, values: dict,
            init: Optional[Path] = None) -> None:
    """--devices N: prepare the corpus once (the processes find it in the cache), choose the run
    folder, then run this same command in N processes through torchrun."""
    from seqgen.data.load import load_corpus
    from seqgen.distributed import launch
    from seqgen.errors import DistributedError
    from seqgen.runs import new_run_dir

    if values["batch"] is not None and values["batch"] % values["devices"]:
        from seqgen.errors import ConfigError

        raise ConfigError(f"--batch {values['batch']} does not divide among {values['devices']} processes; "
                          f"give a global batch that is a multiple of {values['devices']}")
    if not resume:
        with corpus_feedback(quiet) as feedback:
            data = load_corpus(corpus, encoding=encoding, **feedback)
        if out is None:
            out = new_run_dir(data.source or "run")
    from seqgen.fileio import write_json

    Path(out).mkdir(parents=True, exist_ok=True)
    launch_file = Path(out) / LAUNCH_FILE  # the parsed config, read back by every process
    write_json(launch_file, {"values": values})
    argv = ["train", corpus, "--out", str(out), "--encoding", encoding, "--launch-config", str(launch_file)]
    argv += (["--resume"] if resume else []) + (["--quiet"] if quiet else [])
    argv += ["--init", str(init)] if init is not None else []
    try:
        code = launch(argv, values["devices"])
    except DistributedError as e:
        raise DistributedError(f"the training in {values['devices']} processes failed: {e}; what was saved is "
                               f"in {out}: continue with --resume") from None
    if code:  # stopped by a signal: rank 0 saved and said how to resume
        raise typer.Exit(code)


LAUNCH_FILE = ".launch.json"


def _read_launch(path: Path) -> dict:
    """The config values the launching process parsed (``_launch`` writes them)."""
    import json

    from seqgen.errors import ConfigError

    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))["values"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read the launch configuration {path}: {e}") from None
    return {name: values.get(name, f.default) for name, f in _FIELDS.items()}


def _train_as_rank(corpus: str, out: Optional[Path], encoding: str, resume: bool, quiet: bool, values: dict,
                   init: Optional[Path] = None) -> None:
    """One process of a torchrun launch: join the group; rank 0 prepares the corpus (the others
    then find it in the cache) and holds the run folder's lock."""
    from seqgen.distributed import Group
    from seqgen.errors import ConfigError
    from seqgen.runs import run_lock

    if out is None:
        raise ConfigError("a training in several processes needs --out (every process writes the same run)")
    group = Group.join(values["device"])
    try:
        with run_lock(out) if group.is_main else contextlib.nullcontext():
            data = None
            if group.is_main and not resume:
                from seqgen.data.load import load_corpus

                with corpus_feedback(quiet) as feedback:
                    data = load_corpus(corpus, encoding=encoding, **feedback)
            group.barrier()
            try:
                _train(corpus, out, encoding, resume, quiet or not group.is_main, values, data, group, init)
            finally:
                _meet_at_the_end(group)
    finally:
        group.leave()


def _meet_at_the_end(group) -> None:
    """The ranks leave together (the others wait while rank 0 writes its last checkpoint), when
    they ended together: a normal end or a stop request. After an error, nobody waits."""
    import sys

    error = sys.exc_info()[1]
    if error is None or isinstance(error, typer.Exit):
        group.barrier()


def _train(corpus: str, out: Path, encoding: str, resume: bool, quiet: bool, values: dict, data=None,
           group=None, init: Optional[Path] = None) -> None:
    """The training itself, with the run folder locked."""
    from seqgen.train import Trainer

    cfg, resumed = _config(out, values, resume, group)
    data, start = _corpus(corpus, encoding, quiet, data, resumed, init, group)
    cb = ProgressCallback(quiet)
    trainer = Trainer(cfg, data, out, resume=resumed, callback=cb, group=group, init=start)
    if group is not None and not group.is_main:
        trainer.run()
        return
    try:
        with _stop_on_signals(trainer):
            result = trainer.run()
    finally:
        cb.stop()
    _summary(corpus, out, quiet, trainer, result)


def _config(out: Path, values: dict, resume: bool, group=None):
    """(the TrainConfig to train with, the checkpoint resumed or None): a resumed run's config
    with what this command may change, or a new one (refused where a run already is)."""
    from seqgen.checkpoint import load
    from seqgen.errors import ConfigError
    from seqgen.runs import LAST

    if not resume:
        if (out / LAST).exists() and (group is None or group.is_main):
            raise ConfigError(f"{out} already holds a run; add --resume to continue it, or choose another --out")
        return TrainConfig(**values), None
    if not (out / LAST).exists():
        raise ConfigError(f"nothing to resume: {out / LAST} does not exist")
    resumed = load(out / LAST)
    changes = {k: values[k] for k, f in _FIELDS.items() if f.metadata.get("resume") and k not in ("time", "steps")
               and not (k in CHOSEN_STOP and values[k] is None)}  # the early stop seqgen chose stays
    if values["time"] is not None or values["steps"] is not None:
        changes.update(time=None if values["time"] is None else resumed.elapsed + values["time"],
                       steps=values["steps"])
    return resumed.train.replace(**changes), resumed


def _corpus(corpus: str, encoding: str, quiet: bool, data, resumed, init: Optional[Path], group):
    """(the corpus read with the tokenizer the run uses, the --init start or None)."""
    from seqgen.data.load import load_corpus

    if data is None:
        with corpus_feedback(quiet) as feedback:
            data = load_corpus(corpus, encoding=encoding, tokenizer=resumed.tokenizer if resumed else None, **feedback)
    if init is None:
        return data, None
    from seqgen.transfer import init_from

    start = init_from(init, data.tokenizer)  # the parent's weights, in the vocabulary merged with this corpus's
    if start.tokenizer != data.tokenizer:
        with corpus_feedback(quiet) as feedback:
            data = load_corpus(corpus, encoding=encoding, tokenizer=start.tokenizer, **feedback)
    if not quiet and (group is None or group.is_main):
        new = start.note["new_tokens"]
        err.print(f"[dim]starting from {escape(start.note['from'])} (step {start.note['step']:,}): "
                  f"{start.note['kept_tokens']} tokens keep their rows"
                  + (f", {len(new)} new ({escape(''.join(new))!r}) start from the mean row" if new else "")
                  + "[/]", soft_wrap=True)
    return data, start


def _summary(corpus: str, out: Path, quiet: bool, trainer, result) -> None:
    """The chart, the summary line, the notes, and for a stopped run the command that resumes it."""
    if not quiet:
        from seqgen.cli.charts import training_chart

        training_chart(out, err)
    bits = f"{result.best_val_loss / math.log(2):.3f}" if result.best_val_loss is not None else "-"
    val = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
    err.print(
        f"step {result.step}  train loss {result.train_loss:.4f}  best val loss {val} nats "
        f"({bits} bits/token)  {result.tokens_per_s:,.0f} tok/s  {result.elapsed:.0f}s  -> {out}"
    )
    if result.early_stopped:
        cfg, best = trainer.cfg, result.best_val_loss
        gap = ""
        if (cfg.stop_below is not None or cfg.stop_rise is not None) and best:
            gap = (f" (the last {result.val_loss / best - 1:.1%} over the best, the training loss "
                   f"{result.train_loss / best:.0%} of it)")
        err.print(f"stopped early: {cfg.patience} evaluations without a better validation loss{gap}; "
                  f"best at step {result.best_step}, best.pt holds it")
    elif result.overfitting:
        err.print(f"[yellow]note:[/] validation was best at step {result.best_step} of {result.step} and got worse "
                  "after it: the model overfits this corpus. A smaller model (--dim), more dropout (--dropout), "
                  "more data or a shorter budget would help; --patience N stops early. best.pt holds the best step.",
                  soft_wrap=True)
    if result.interrupted:
        import signal

        cmd = ["seqgen", "train", corpus, "--out", str(out), "--resume"]
        by = result.signal
        why = f"stopped by {signal.Signals(by).name}" if by and by != signal.SIGINT else "interrupted"
        err.print(f"{why}; checkpoint saved at step {result.step}. Resume with:\n  {shlex.join(cmd)}")
        raise typer.Exit(128 + (result.signal or signal.SIGINT))  # 130 for Ctrl-C, 143 for SIGTERM


@contextlib.contextmanager
def _stop_on_signals(trainer):
    """Ctrl-C, SIGTERM (timeout, docker stop, SLURM, Kubernetes) and SIGHUP ask the trainer to stop
    after its current step and save: never in the middle of a step, so the checkpoint holds a
    whole step and a resumed run continues exactly (and in a multi-process training no process is
    left waiting inside a collective)."""
    import signal

    wanted = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {}
    try:
        for signum in wanted:
            previous[signum] = signal.signal(signum, lambda num, frame: trainer.request_stop(num))
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _remove_if_unused(run: Path) -> None:
    """Remove a run folder that seqgen made for a training that failed before writing anything."""
    from seqgen.runs import LOCK

    with contextlib.suppress(OSError):
        if all(p.name == LOCK for p in run.iterdir()):
            (run / LOCK).unlink(missing_ok=True)
            run.rmdir()


# ---- options made from TrainConfig's fields -------------------------------------------------------
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _config_values(options: dict) -> dict:
    """Option values -> TrainConfig keyword arguments (text parsed where the field says how)."""
    values = {}
    for name, f in _FIELDS.items():
        value = options.get(name)
        parse = f.metadata.get("parse")
        if parse is not None:
            value = parse(value) if value is not None else f.default
        values[name] = value
    return values


def _option_type(name: str) -> Any:
    if _FIELDS[name].metadata.get("parse") is not None:
        return Optional[str]  # read as text, parsed by the field's own parser
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and len(args) < len(typing.get_args(hint)):
        return Optional[args[0]]
    return hint


def _signature() -> inspect.Signature:
    """train()'s parameters: its own, then one option per config field, each with its help text."""
    P = inspect.Parameter
    own = [
        P(
            "corpus",
            P.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[
                str,
                typer.Argument(
                    help="A UTF-8 text file, a folder of text or music files, or a built-in corpus "
                         "(see `seqgen corpus list`)."
                ),
            ],
        ),
        P(
            "out",
            P.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<corpus name>).")],
        ),
    ]
    config = []
    for name, f in _FIELDS.items():
        parse = f.metadata.get("parse")
        default = None if parse is not None else f.default
        config.append(
            P(
                name,
                P.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=Annotated[
                    _option_type(name),
                    typer.Option(help=f.metadata["help"], show_default=parse is None and default is not None),
                ],
            )
        )
    tail = [
        P("encoding", P.POSITIONAL_OR_KEYWORD, default="utf-8", annotation=Annotated[str, typer.Option(
            help="Text encoding of the corpus.")]),
        P("resume", P.POSITIONAL_OR_KEYWORD, default=False, annotation=Annotated[bool, typer.Option(
            "--resume", help="Continue the run in --out where it stopped.")]),
        P("quiet", P.POSITIONAL_OR_KEYWORD, default=False, annotation=Annotated[bool, typer.Option(
            "--quiet", "-q", help="No progress bar or loss chart; only the summary line.")]),
        P("launch_config", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[Path], typer.Option(
            hidden=True, help="The parsed configuration, for the processes of a --devices N launch.")]),
        P("init", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[Path], typer.Option(
            help="Start from this run's weights (a run folder: its best checkpoint; or a checkpoint), with its model "
                 "and a vocabulary merged with the corpus's; a new run, a fresh optimizer and schedule.")]),
    ]
    return inspect.Signature(own + config + tail, return_annotation=None)


train.__signature__ = _signature()  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
