"""Training in several processes with PyTorch's own launcher (torchrun) and DistributedDataParallel.

- ``launch``: ``seqgen train ... --devices N`` re-runs the same command under
  ``torch.distributed.run --standalone --nproc-per-node N`` (N GPUs with NCCL when CUDA is
  there, N CPU processes with gloo otherwise). Started by ``torchrun`` or a SLURM script
  instead, a process finds RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR in its environment.
- ``Group``: one process's view: its rank, its device, and the few collectives the trainer
  needs. The global batch is drawn identically on every rank from the shared seed and each rank
  trains on its own rows, so N processes see exactly the examples one process would, and a
  run's hyperparameters and results do not depend on the device count.
- Rank 0 decides (time budget, evaluation, stop requests) and shares each decision every step;
  it alone evaluates, writes checkpoints, metrics and progress. The other ranks end at once on
  SIGTERM (they hold nothing to save); rank 0 saves the last complete step when its peers are
  gone or a signal asked it to stop.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

from seqgen.errors import ConfigError, DistributedError

def in_launched_process() -> bool:
    """True in a process started by torchrun (or a SLURM script that sets its variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def launch(argv: list[str], processes: int) -> int:
    """Run ``python -m seqgen <argv>`` in ``processes`` processes through torchrun's own launcher
    (in this process, so its failure report becomes one line rather than a traceback). Returns 0,
    or the exit code of a stop that a signal asked for (Ctrl-C and SIGTERM stop the launcher, which
    stops the processes: rank 0 saves a checkpoint first); raises DistributedError naming the
    process that failed."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if processes < 1:
        raise ConfigError(f"--devices must be at least 1, got {processes}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default for several processes
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failures become our line
    args = parse_args(["--standalone", f"--nproc-per-node={processes}", "--max-restarts=0",
                       "--monitor-interval=0.5", "-m", "seqgen", *argv])
    try:
        run(args)
    except SignalException as e:
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        codes = {rank: f.exitcode for rank, f in e.failures.items()}
        if all(code in STOPPED for code in codes.values()):
            return max(codes.values())  # every process saved or ended as a signal asked: a stop, not a failure
        raise DistributedError(_first_failure(codes)) from None
    return 0


STOPPED = (129, 130, 143)  # exit codes of a process that stopped as SIGHUP, SIGINT or SIGTERM asked (and saved)


def _first_failure(codes: dict[int, int]) -> str:
    """The failure that ended a launch, in words. A process killed by a signal other than SIGTERM
    (SIGKILL from the OOM killer, a crash) is never the consequence of another's failure; an error
    exit may be (the others see their peer gone and stop with an error); a SIGTERM is what the
    launcher sends the others once one has failed."""
    def cause(item: tuple[int, int]) -> int:
        code = item[1]
        return 0 if code < 0 and code != -signal.SIGTERM else 1 if code > 0 and code not in STOPPED else 2

    rank, code = min(codes.items(), key=lambda item: (cause(item), item[0]))
    if code < 0:
        return f"the process of rank {rank} was killed by {signal.Signals(-code).name}"
    return f"the process of rank {rank} ended with exit code {code} (its first error is above)"


@dataclass
class Group:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, device: str = "auto", timeout_s: float = 1800.0) -> "Group":
        """Join the process group torchrun set up: NCCL on this process's GPU when CUDA is there
        (and not refused by ``device``), gloo on the CPU otherwise."""
        import torch.distributed as dist

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
        if use_cuda:
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        group = cls(rank, world, local, dev)
        if not group.is_main:
            # Nothing to save on this rank: the default actions end it at once on a signal, and
            # the terminal's Ctrl-C is left to rank 0 and the launcher.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return group

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch."""
        if batch % self.world:
            raise ConfigError(f"--batch {batch} does not divide among {self.world} processes; "
                              f"give a global batch that is a multiple of {self.world}")
        per = batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def decide(self, *values: float) -> list[float]:
        """Rank 0's values, shared with every rank (the time budget, a stop request)."""
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return t.tolist()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def peers_gone(error: BaseException) -> bool:
    """Whether a collective failed because another rank ended (crashed or was stopped)."""
    text = str(error).lower()
    return any(k in text for k in ("connection closed", "connection reset", "broken pipe", "peer", "timed out",
                                   "nccl", "gloo"))


def rows_of(x: np.ndarray, group: Group | None) -> np.ndarray:
    return x if group is None else x[group.rows(x.shape[0])]
