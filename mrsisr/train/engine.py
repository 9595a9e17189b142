"""The training engine: runs a pipeline's stages with EMA, checkpoints, validation and resume.

Every random draw of step `k` of stage `i` (which maps form the batch, their augmentation and
low-resolution size, the diffusion timesteps and noise) comes from generators seeded by
`(seed, i, k, rank)`. A run that is killed and resumed from its last checkpoint therefore takes
exactly the same steps as one that was never interrupted.

Run folder layout:

```text
RUN/
  stages/<stage>/latest/   checkpoint written every `checkpoint_every` steps and at the end
  stages/<stage>/best/     checkpoint with the lowest validation loss
  weights.safetensors      the trained parts for inference (EMA weights where kept)
  card.json                how they were trained: recipe, data, steps, wall time, device, losses
```

Under `torchrun --nproc_per_node=N` the same code trains with DistributedDataParallel: each rank
takes its share of every batch, losses are computed inside the wrapped module's `forward` (so
gradients are all-reduced), data-dependent initialisation (ActNorm) runs on identical data on every
rank before wrapping, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from mrsisr.errors import CheckpointError, MrsisrError
from mrsisr.lr_schedules import LR_SCHEDULES, lr_factor
from mrsisr.pipeline import pipeline_parts
from mrsisr.train.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from mrsisr.train.stages import Stage, training_stages
from mrsisr.types import Batch

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any]:
    """The dotted path and values of the first leaf where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return path, a, b


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class _RunLock:
    """An exclusive lock on a run folder, held for the whole training (released at exit)."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self._fh = open(path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise MrsisrError(
                f"--out {path.parent}: another training is running in this folder; wait for it "
                "to end or choose another --out"
            ) from None

    def release(self) -> None:
        """Drop the lock."""
        if not self._fh.closed:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()

    def __enter__(self) -> _RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class TrainConfig:
    """Settings of one training run (per stage where it matters).

    Attributes:
        steps: Optimiser steps per stage.
        batch_size: Maps per step (per process under torchrun).
        seed: Seed of every random draw.
        lr: Learning rate for every stage; `None` keeps each stage's paper default.
        ema_decay: EMA decay (with timm's warm-up, so short runs are not dominated by the init).
        checkpoint_every: Steps between `latest` checkpoints.
        validate_every: Steps between validation passes (and `best` checkpoints).
        val_batches: Validation batches per pass.
        device: Torch device, e.g. `cpu` or `cuda`.
        lr_schedule: Learning-rate schedule of every stage over its `steps`: `"constant"`,
            `"linear"` (decay to zero, the paper's "decay per iteration") or `"cosine"`; see
            [`lr_factor`][mrsisr.lr_schedules.lr_factor]. `None`: the recipe's `[train]`
            value, else constant.
        warmup_steps: Linear warm-up steps before the schedule. `None`: the recipe's `[train]`
            value, else 0.
    """

    steps: int = 1000
    batch_size: int = 8
    seed: int = 0
    lr: float | None = None
    ema_decay: float = 0.9999
    checkpoint_every: int = 250
    validate_every: int = 250
    val_batches: int = 8
    device: str = "cpu"
    lr_schedule: str | None = None
    warmup_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "validate_every"):
            if getattr(self, name) < 1:
                raise MrsisrError(f"--{name.replace('_', '-')} must be at least 1")
        if self.val_batches < 0:
            raise MrsisrError("--val-batches must be non-negative")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise MrsisrError(
                f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise MrsisrError(
                f"--warmup-steps must be in [0, --steps), got {self.warmup_steps} with {self.steps} steps"
            )


@dataclass
class StageResult:
    """What one stage did.

    Attributes:
        name: Stage name.
        steps: Steps trained (0 when reused).
        final_loss: Mean training loss over the last 50 steps.
        best_val_loss: Lowest validation loss seen (`None` without validation data).
        wall_time_s: Seconds spent in this stage in this process (across resumes: summed).
        reused_from: Path the weights were loaded from instead of training, if any.
        initialized_from: Path the weights were loaded from before training (fine-tuning), if
            any.
    """

    name: str
    steps: int = 0
    final_loss: float | None = None
    best_val_loss: float | None = None
    wall_time_s: float = 0.0
    reused_from: str | None = None
    initialized_from: str | None = None


@dataclass
class DistInfo:
    """Process-group facts (a single process outside torchrun).

    Attributes:
        rank: This process's rank.
        world: Number of processes.
        device: This process's device.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0


def setup_distributed(device: str = "cpu") -> DistInfo:
    """Join the torchrun process group if there is one.

    Args:
        device: Requested device type (`cpu` or `cuda`).

    Returns:
        Rank, world size and this process's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, torch.device(device))
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistInfo(rank, dist.get_world_size(), dev)


def step_seed(*keys: int) -> int:
    """Derive a 63-bit seed from integers (seed, stage, step, rank, ...).

    Args:
        *keys (int): Integers that identify the draw.

    Returns:
        A seed for `torch.Generator.manual_seed`.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


class BatchPlan:
    """Which maps make up step `k`'s batch, as a pure function of `k` (for exact resume).

    Args:
        dataset: An [`MRSIDataset`][mrsisr.data.dataset.MRSIDataset].
        batch_size: Maps per process.
        seed: Shuffling seed.
        world: Number of processes; each global batch has `batch_size * world` maps.
        rank: This process's rank; it takes its contiguous share of each global batch.
    """

    def __init__(
        self, dataset: Any, batch_size: int, seed: int, world: int = 1, rank: int = 0
    ) -> None:
        from mrsisr.data import MetaboliteBatchSampler

        if len(dataset) == 0:
            raise MrsisrError("the training data hold no non-empty maps")
        self.dataset = dataset
        self.batch_size = batch_size
        self.world, self.rank = world, rank
        self.sampler = MetaboliteBatchSampler(dataset, batch_size * world, shuffle=True, seed=seed)
        self._epoch = -1
        self._batches: list[list[int]] = []

    def indices(self, step: int) -> list[int]:
        """Return the dataset indices of this process's part of batch `step`.

        Args:
            step: Global step number (0-based).

        Returns:
            Dataset indices.
        """
        n = len(self.sampler)
        epoch, pos = divmod(step, n)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._batches = list(iter(self.sampler))
            self._epoch = epoch
        full = self._batches[pos]
        share = math.ceil(len(full) / self.world)
        # a rank left without maps (batch smaller than the world) repeats one: DDP needs every rank to step
        return full[self.rank * share : (self.rank + 1) * share] or full[:1]

    def batch(self, step: int, device: torch.device) -> Batch:
        """Load batch `step` (with the dataset's per-epoch random draws).

        Args:
            step: Global step number.
            device: Where to put the tensors.

        Returns:
            The batch.
        """
        from mrsisr.data import collate

        epoch = step // len(self.sampler)
        self.dataset.set_epoch(epoch)
        return collate([self.dataset[i] for i in self.indices(step)]).to(device)


class _LossModule(nn.Module):
    """Wraps a stage's loss so DDP sees it as `forward` (gradients are then all-reduced)."""

    def __init__(self, modules: Mapping[str, nn.Module], loss: Any) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(dict(modules))
        self._loss = loss

    def forward(self, batch: Batch, generator: torch.Generator | None) -> torch.Tensor:
        return self._loss(batch, generator)


def _wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    if info.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=False)


def _params(modules: Mapping[str, nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for m in modules.values():
        for p in m.parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                out.append(p)
    return out


@contextmanager
def _swapped(modules: Mapping[str, nn.Module], emas: Mapping[str, Any]):
    """Temporarily load EMA weights into the live modules."""
    saved = {
        k: {n: t.detach().clone() for n, t in m.state_dict().items()}
        for k, m in modules.items()
        if k in emas
    }
    try:
        for k, ema in emas.items():
            modules[k].load_state_dict(ema.module.state_dict())
        yield
    finally:
        for k, sd in saved.items():
            modules[k].load_state_dict(sd)


class Trainer:
    """Train every stage of a built pipeline.

    Args:
        pipeline: The built pipeline (its parts are trained in place).
        recipe: The resolved recipe it was built from (recorded in checkpoints and the card).
        train_data: Training dataset ([`MRSIDataset`][mrsisr.data.dataset.MRSIDataset] with augmentation).
        val_data: Validation dataset, or `None` to skip validation.
        out_dir: Run folder.
        config: Run settings.
        reuse: Stage name → run folder or weights file whose weights replace training that stage
            (e.g. one trained truncated UNet serving FTDDM and TDPM); `PATH#PART` takes the part
            saved there under another name (`pre_network=runs/munet#network`).
        init: Stage name → run folder or weights file to start that stage from (fine-tuning:
            the stage then trains as usual, EMA included); `PATH#PART` as for `reuse`.
        data_note: One line describing the data, for the card.
        progress: Show a rich progress bar.
        on_step: Called as `on_step(stage_name, step)` after every completed step (after any
            checkpoint of that step was written); for logging or tests.
    """

    def __init__(
        self,
        pipeline: nn.Module,
        recipe: Any,
        train_data: Any,
        val_data: Any | None,
        out_dir: str | os.PathLike[str],
        config: TrainConfig,
        *,
        reuse: Mapping[str, str | os.PathLike[str]] | None = None,
        init: Mapping[str, str | os.PathLike[str]] | None = None,
        data_note: str = "",
        progress: bool = True,
        on_step: Callable[[str, int], None] | None = None,
    ) -> None:
        self.info = setup_distributed(config.device)
        self.on_step = on_step
        self.pipeline = pipeline.to(self.info.device)
        self.recipe = recipe
        self.train_data = train_data
        self.val_data = val_data
        self.out = Path(out_dir)
        self.config = config
        self.reuse = {k: Path(v) for k, v in (reuse or {}).items()}
        self.init = {k: Path(v) for k, v in (init or {}).items()}
        self.data_note = data_note
        self.progress = progress and self.info.main
        self.stages = training_stages(self.pipeline)
        names = [s.name for s in self.stages]
        for flag, table in (("--reuse", self.reuse), ("--init", self.init)):
            for k in table:
                if k not in names:
                    raise MrsisrError(
                        f"{flag} {k}=...: no stage '{k}'; this recipe trains: {', '.join(names)}"
                    )
        both = set(self.reuse) & set(self.init)
        if both:
            raise MrsisrError(f"--reuse and --init both name stage(s) {', '.join(sorted(both))}")

    # ------------------------------------------------------------------ public
    def run(self, resume: bool = False) -> list[StageResult]:
        """Train all stages in order, then write the inference weights and the card.

        Args:
            resume: Continue from the `latest` checkpoints found in the run folder.

        Returns:
            One result per stage.

        Raises:
            MrsisrError: If the run folder already holds a run and `resume` is false, or a loss
                becomes non-finite.
        """
        lock = self._claim_run_folder(resume) if self.info.main else nullcontext()
        with lock:
            results = [self._run_stage(i, stage, resume) for i, stage in enumerate(self.stages)]
            if self.info.main:
                self._export(results)
        if self.info.world > 1:
            dist.barrier()
        return results

    def identity(self) -> dict[str, Any]:
        """What a run folder belongs to: recipe, size, resolved tables, data and the settings a
        resumed run must keep (seed, batch, learning rate and its schedule, reused parts).

        Returns:
            A JSON-able dict, written to `RUN/run.json`.
        """
        cfg = self.config
        return {
            "recipe": self.recipe.name,
            "size": self.recipe.size,
            "tables": json.loads(json.dumps(self.recipe.tables, default=list)),
            "data": self.data_note,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "lr_schedule": cfg.lr_schedule or "constant",
            "warmup_steps": cfg.warmup_steps or 0,
            "world_size": self.info.world,
            "reuse": {k: str(v) for k, v in sorted(self.reuse.items())},
            "init": {k: str(v) for k, v in sorted(self.init.items())},
        }

    def _claim_run_folder(self, resume: bool):
        """Check the run folder may be used, lock it, and record (or check) what it belongs to."""
        from mrsisr.outputs import check_writable

        out = self.out
        if out.exists() and not out.is_dir():
            raise MrsisrError(f"--out {out}: is a file, not a folder; choose a folder path")
        is_run = (out / RUN_FILE).is_file() or (out / "stages").is_dir()
        if not resume and is_run:
            raise MrsisrError(
                f"{out}: already holds a run; pass --resume to continue it or choose another --out"
            )
        if not is_run and out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise MrsisrError(
                f"--out {out}: exists and is not a run folder (no {RUN_FILE}); choose a new or "
                "empty folder"
            )
        check_writable(out)
        out.mkdir(parents=True, exist_ok=True)
        lock = _RunLock(out / LOCK_FILE)
        mine = self.identity()
        try:
            recorded = (
                json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).is_file() else None
            )
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            lock.release()
            raise MrsisrError(
                f"{out / RUN_FILE}: unreadable ({exc}); choose another --out"
            ) from None
        if recorded is not None:
            if not isinstance(recorded, dict):
                lock.release()
                raise MrsisrError(f"{out / RUN_FILE}: not a run record; choose another --out")
            for key, value in mine.items():
                if key in recorded and recorded[key] != value:
                    lock.release()
                    where, was, now = _first_difference(recorded[key], value, key)
                    raise MrsisrError(
                        f"--resume {out}: the run was made with {where} = {_short(was)}, not "
                        f"{_short(now)}; resume with the same settings or choose another --out"
                    )
        else:
            tmp = out / f".{RUN_FILE}.tmp"
            tmp.write_text(json.dumps(mine, indent=2))
            os.replace(tmp, out / RUN_FILE)
        return lock

    # ------------------------------------------------------------------ stages
    def _stage_dir(self, stage: Stage) -> Path:
        return self.out / "stages" / stage.name

    def _run_stage(self, index: int, stage: Stage, resume: bool) -> StageResult:
        cfg = self.config
        result = StageResult(stage.name)
        if stage.name in self.reuse:
            self._load_stage(stage, self.reuse[stage.name], "--reuse")
            result.reused_from = str(self.reuse[stage.name])
            return result
        if stage.name in self.init:  # fine-tuning: start from these weights, then train
            self._load_stage(stage, self.init[stage.name], "--init")
            result.initialized_from = str(self.init[stage.name])
        for module in stage.frozen.values():
            module.requires_grad_(False)
        lr = cfg.lr if cfg.lr is not None else stage.lr
        opt = torch.optim.Adam(
            _params(stage.modules), lr=lr, betas=stage.betas, weight_decay=stage.weight_decay
        )
        optimizers = {"main": opt}
        if stage.adversarial:
            clr = cfg.lr if cfg.lr is not None else (stage.critic_lr or stage.lr)
            optimizers["critic"] = torch.optim.Adam(
                _params(stage.critic_modules), lr=clr, betas=stage.critic_betas or stage.betas
            )
        base_lrs = {k: o.param_groups[0]["lr"] for k, o in optimizers.items()}
        emas = self._make_emas(stage) if stage.ema else {}
        plan = BatchPlan(
            self.train_data,
            cfg.batch_size,
            step_seed(cfg.seed, index),
            self.info.world,
            self.info.rank,
        )
        start, best, history, wall = 0, math.inf, [], 0.0
        latest = self._stage_dir(stage) / "latest"
        if resume and latest.is_dir():
            ck = load_checkpoint(latest)
            if ck.state.get("stage") != stage.name:
                raise CheckpointError(
                    f"{latest}: belongs to stage '{ck.state.get('stage')}', not '{stage.name}'"
                )
            restore_checkpoint(
                ck,
                modules=dict(stage.modules) | dict(stage.critic_modules),
                ema={k: e.module for k, e in emas.items()},
                optimizers=optimizers,
                restore_rng=False,
            )
            start = _checked_step(ck, optimizers["main"], cfg.steps)
            best = ck.state.get("best_val_loss") or math.inf
            history = list(ck.state.get("recent_losses", []))
            wall = float(ck.state.get("wall_time_s", 0.0))
        else:
            self._data_dependent_init(index, stage)

        loss_module = _wrap(_LossModule(stage.modules, stage.loss), self.info)
        critic_module = (
            _wrap(_LossModule(stage.critic_modules, stage.critic_loss), self.info)
            if stage.adversarial
            else None
        )
        t0 = time.perf_counter()
        bar = self._progress()
        live = bar is not None and bar.console.is_terminal
        with bar if bar is not None else nullcontext():
            task = (
                bar.add_task(
                    stage.name, total=cfg.steps, completed=start, loss=float("nan"), rate=""
                )
                if bar
                else None
            )
            last_tick, last_step = time.perf_counter(), start
            for step in range(start, cfg.steps):
                factor = lr_factor(
                    step, cfg.steps, cfg.lr_schedule or "constant", cfg.warmup_steps or 0
                )
                for name, optimizer in optimizers.items():
                    for group in optimizer.param_groups:
                        group["lr"] = base_lrs[name] * factor
                batch = plan.batch(step, self.info.device)
                gen = torch.Generator().manual_seed(
                    step_seed(cfg.seed, index, step, self.info.rank)
                )
                if critic_module is not None:
                    for _ in range(stage.critic_steps):
                        closs = critic_module(batch, gen)
                        self._check(closs, stage, step, "critic loss")
                        optimizers["critic"].zero_grad(set_to_none=True)
                        closs.backward()
                        optimizers["critic"].step()
                loss = loss_module(batch, gen)
                self._check(loss, stage, step, "loss")
                opt.zero_grad(set_to_none=True)
                if critic_module is not None:
                    for p in _params(stage.critic_modules):
                        p.grad = None
                loss.backward()
                if stage.grad_clip:
                    nn.utils.clip_grad_norm_(_params(stage.modules), stage.grad_clip)
                opt.step()
                for k, ema in emas.items():
                    ema.update(stage.modules[k], step=step + 1)
                history = (history + [float(loss.detach())])[-50:]
                done = step + 1
                if task is not None:
                    now = time.perf_counter()
                    if now - last_tick > (0.5 if live else 60.0) or done == cfg.steps:
                        rate = (done - last_step) / (now - last_tick)
                        bar.update(
                            task,
                            completed=done,
                            loss=float(np.mean(history)),
                            rate=f"{rate:.2f} it/s",
                        )
                        if not live:  # a log file, not a terminal: one plain line a minute
                            eta = (cfg.steps - done) / max(rate, 1e-9)
                            bar.console.print(
                                f"{stage.name} {done}/{cfg.steps} loss {np.mean(history):.4f} "
                                f"{rate:.2f} it/s eta {eta / 60:.1f} min",
                                highlight=False,
                            )
                        last_tick, last_step = now, done
                validate = (
                    self.val_data is not None
                    and cfg.val_batches > 0
                    and (done % cfg.validate_every == 0 or done == cfg.steps)
                )
                if validate:
                    val = self.validate(index, stage, emas)
                    result.best_val_loss = (
                        val if result.best_val_loss is None else min(val, result.best_val_loss)
                    )
                    if val < best:
                        best = val
                        self._save(
                            stage,
                            "best",
                            done,
                            optimizers,
                            emas,
                            best,
                            history,
                            wall + time.perf_counter() - t0,
                        )
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    self._save(
                        stage,
                        "latest",
                        done,
                        optimizers,
                        emas,
                        best,
                        history,
                        wall + time.perf_counter() - t0,
                    )
                if self.on_step is not None:
                    self.on_step(stage.name, done)
        result.steps = cfg.steps
        result.final_loss = float(np.mean(history)) if history else None
        result.best_val_loss = None if not math.isfinite(best) else best
        result.wall_time_s = wall + time.perf_counter() - t0
        for k, ema in emas.items():  # inference uses the EMA weights
            stage.modules[k].load_state_dict(ema.module.state_dict())
        return result

    def _load_stage(self, stage: Stage, source: Path, flag: str) -> None:
        path, _, part = str(source).partition("#")
        if part and len(stage.modules) != 1:
            raise MrsisrError(
                f"{flag} {stage.name}=...#{part}: stage '{stage.name}' has several parts"
            )
        load_weights_into(stage.modules, path, {k: part for k in stage.modules} if part else None)

    def _make_emas(self, stage: Stage) -> dict[str, Any]:
        from timm.utils import ModelEmaV3

        return {
            k: ModelEmaV3(m, decay=self.config.ema_decay, use_warmup=True)
            for k, m in stage.modules.items()
        }

    def _data_dependent_init(self, index: int, stage: Stage) -> None:
        # ActNorm-style layers initialise from their first batch. Run that batch (the same one on
        # every rank) before DDP wraps the modules, so ranks start identical.
        if self.info.world <= 1:
            return
        full = BatchPlan(
            self.train_data, self.config.batch_size, step_seed(self.config.seed, index), 1, 0
        )
        batch = full.batch(0, self.info.device)
        gen = torch.Generator().manual_seed(step_seed(self.config.seed, index, 0, 0))
        with torch.no_grad():
            stage.loss(batch, gen)

    @torch.no_grad()
    def validate(self, index: int, stage: Stage, emas: Mapping[str, Any] | None = None) -> float:
        """Mean loss of a stage on fixed validation batches (with EMA weights when kept).

        Args:
            index: Stage index (seeds the fixed draws).
            stage: The stage.
            emas: EMA models by part name.

        Returns:
            The mean validation loss.
        """
        plan = BatchPlan(
            self.val_data, self.config.batch_size, step_seed(self.config.seed, 10_000 + index)
        )
        losses = []
        with _swapped(stage.modules, emas or {}):
            for k in range(min(self.config.val_batches, len(plan.sampler))):
                batch = plan.batch(k, self.info.device)
                gen = torch.Generator().manual_seed(step_seed(self.config.seed, 10_000 + index, k))
                losses.append(float(stage.loss(batch, gen)))
        return float(np.mean(losses)) if losses else math.nan

    def _check(self, loss: torch.Tensor, stage: Stage, step: int, what: str) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise MrsisrError(
                f"stage '{stage.name}': {what} became {float(loss)} at step {step}; lower the learning "
                "rate (--lr) or resume from an earlier checkpoint"
            )

    def _save(
        self, stage: Stage, which: str, step: int, optimizers, emas, best, history, wall
    ) -> None:
        if not self.info.main:
            return
        save_checkpoint(
            self._stage_dir(stage) / which,
            modules=dict(stage.modules) | dict(stage.critic_modules),
            ema={k: e.module for k, e in emas.items()},
            optimizers=optimizers,
            state={
                "stage": stage.name,
                "step": step,
                "recipe": self.recipe.to_dict(),
                "config": asdict(self.config),
                "best_val_loss": best if math.isfinite(best) else None,
                "recent_losses": history,
                "wall_time_s": wall,
                "lr_schedule": {
                    "type": self.config.lr_schedule or "constant",
                    "warmup_steps": self.config.warmup_steps or 0,
                    "total_steps": self.config.steps,
                    "last_lr": {k: o.param_groups[0]["lr"] for k, o in optimizers.items()},
                },
            },
            save_rng=False,  # every draw is re-derived from (seed, stage, step)
        )

    def _progress(self):
        if not self.progress:
            return None
        from mrsisr.progress import progress_bar

        return progress_bar("loss {task.fields[loss]:.4f}", "{task.fields[rate]}", eta_label="eta")

    # ------------------------------------------------------------------ export
    def _export(self, results: Sequence[StageResult]) -> None:
        critics = {id(m) for s in self.stages for m in s.critic_modules.values()}
        parts = {
            k: m for k, (m, _) in pipeline_parts(self.pipeline).items() if id(m) not in critics
        }
        save_weights(parts, self.out / WEIGHTS_FILE)
        card = {
            "recipe": self.recipe.name,
            "size": self.recipe.size,
            "resolved_recipe": self.recipe.to_dict(),
            "data": self.data_note,
            "config": asdict(self.config),
            "stages": [asdict(r) for r in results],
            "wall_time_s": sum(r.wall_time_s for r in results),
            "device": describe_device(self.info.device),
            "world_size": self.info.world,
            "torch": torch.__version__,
        }
        tmp = self.out / f".{CARD_FILE}.tmp"
        tmp.write_text(json.dumps(card, indent=2))
        os.replace(tmp, self.out / CARD_FILE)


def _checked_step(ck: Any, optimizer: torch.optim.Optimizer, planned: int) -> int:
    """The step a checkpoint was written at, checked against its optimizer's own count."""
    where = ck.path / "state.json"
    step = ck.state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    counts = {
        int(float(v["step"])) for v in optimizer.state.values() if "step" in v
    }  # Adam counts its own updates: they must agree with the recorded step
    if counts and counts != {step}:
        raise CheckpointError(
            f"{where}: 'step' is {step} but the optimizer state has taken {sorted(counts)[0]} "
            "steps; the checkpoint was altered, use an earlier one"
        )
    if step > planned:
        raise MrsisrError(
            f"{ck.path}: checkpoint is at step {step}, past --steps {planned}; pass --steps {step} "
            "or more"
        )
    return step


def describe_device(device: torch.device) -> str:
    """Describe the machine a run used, for weight cards.

    Args:
        device: The torch device.

    Returns:
        E.g. `cpu (x86_64, 2 threads)` or `NVIDIA H100 80GB HBM3`.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def save_weights(
    parts: Mapping[str, nn.Module], path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write inference weights (`"<part>.<param>"`) to a safetensors file atomically.

    Args:
        parts: Modules by part name.
        path: Output file.
        dtype: Cast floating tensors to this dtype (e.g. `torch.float16` for the zoo).

    Returns:
        The written file.
    """
    path = Path(path)
    tensors = {}
    for part, module in parts.items():
        for k, v in module.state_dict().items():
            v = v.detach().cpu()
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            tensors[f"{part}.{k}"] = v.contiguous()
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    return path


def load_weights_into(
    parts: Mapping[str, nn.Module],
    source: str | os.PathLike[str],
    rename: Mapping[str, str] | None = None,
) -> None:
    """Load parts from a run folder, a weights file or a checkpoint folder.

    Args:
        parts: Modules to fill, by part name.
        source: A run folder (its `weights.safetensors`), a `.safetensors` file, or a checkpoint
            folder (its EMA weights when present).
        rename: Part name → name it has in `source`, when they differ (e.g. the Flow Enhancer's
            `pre_network` is the `network` of a MUNet-FS-cWGAN run).

    Raises:
        CheckpointError: If the source is missing, unreadable, or lacks or mismatches a part.
    """
    source = Path(source)
    rename = dict(rename or {})
    if (source / "state.json").is_file():
        ck = load_checkpoint(source)
        for k, m in parts.items():
            name = rename.get(k, k)
            has_ema = any(key.startswith(f"ema.{name}.") for key in ck.weights)
            _strict_load(m, ck.part_state_dict(name, ema=has_ema), source, k)
        return
    file = source / WEIGHTS_FILE if source.is_dir() else source
    if not file.is_file():
        raise CheckpointError(f"{file}: weights not found")
    try:
        tensors = load_file(str(file))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{file}: unreadable weights ({' '.join(str(exc).split())[:200]})"
        ) from None
    for k, m in parts.items():
        prefix = f"{rename.get(k, k)}."
        sd = {key[len(prefix) :]: v for key, v in tensors.items() if key.startswith(prefix)}
        if not sd:
            have = sorted({key.split(".", 1)[0] for key in tensors})
            raise CheckpointError(
                f"{file}: no weights for part '{prefix[:-1]}'; it has: {', '.join(have)} "
                "(name one with --reuse STAGE=PATH#PART)"
            )
        _strict_load(m, sd, file, k)


def _strict_load(module: nn.Module, sd: Mapping[str, torch.Tensor], where: Path, part: str) -> None:
    ref = module.state_dict()
    sd = {k: v.to(ref[k].dtype) if k in ref else v for k, v in sd.items()}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"{where}: part '{part}' does not fit this model ({detail}); another recipe or size?"
        ) from None
