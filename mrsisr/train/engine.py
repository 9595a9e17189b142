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
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mrsisr.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from mrsisr.devices import describe_device
from mrsisr.errors import CheckpointError, MrsisrError
from mrsisr.lr_schedules import lr_factor
from mrsisr.pipelines import pipeline_parts
from mrsisr.runtime import autocast, enable_tf32, grad_scaler, optimizer_options
from mrsisr.stages import Stage, training_stages
from mrsisr.train.config import StageResult, TrainConfig
from mrsisr.train.parallel import (
    BatchPlan,
    LossModule,
    ema_swapped,
    optimizer_step,
    setup_distributed,
    step_seed,
    trainable_params,
    wrap_ddp,
)
from mrsisr.train.runfolder import RunLock, checked_step, claim_run_folder
from mrsisr.weights import CARD_FILE, WEIGHTS_FILE, load_weights_into, save_weights


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
        for flag, table in (("`reuse`", self.reuse), ("`init`", self.init)):
            for k in table:
                if k not in names:
                    raise MrsisrError(
                        f"{flag} {k}=...: no stage '{k}'; this recipe trains: {', '.join(names)}"
                    )
        both = set(self.reuse) & set(self.init)
        if both:
            raise MrsisrError(f"`reuse` and `init` both name stage(s) {', '.join(sorted(both))}")

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
        enable_tf32(self.info.device)
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
            "precision": cfg.precision,  # absent from older run folders: not checked there
            "init_adapt": cfg.init_adapt,
        }

    def _claim_run_folder(self, resume: bool) -> RunLock:
        """Check the run folder may be used, lock it, and record (or check) what it belongs to."""
        return claim_run_folder(self.out, self.identity(), resume)

    # ------------------------------------------------------------------ stages
    def _stage_dir(self, stage: Stage) -> Path:
        return self.out / "stages" / stage.name

    def _run_stage(self, index: int, stage: Stage, resume: bool) -> StageResult:
        cfg = self.config
        result = StageResult(stage.name)
        if stage.name in self.reuse:
            self._load_stage(stage, self.reuse[stage.name], "`reuse`")
            result.reused_from = str(self.reuse[stage.name])
            return result
        if stage.name in self.init:  # fine-tuning: start from these weights, then train
            self._load_stage(stage, self.init[stage.name], "`init`", adapt=cfg.init_adapt)
            result.initialized_from = str(self.init[stage.name])
        for module in stage.frozen.values():
            module.requires_grad_(False)
        lr = cfg.lr if cfg.lr is not None else stage.lr
        fast = optimizer_options(self.info.device)
        opt = torch.optim.Adam(
            trainable_params(stage.modules),
            lr=lr,
            betas=stage.betas,
            weight_decay=stage.weight_decay,
            **fast,
        )
        optimizers = {"main": opt}
        if stage.adversarial:
            # a critic rate of its own (e.g. a GAN's faster discriminator) wins over --lr
            clr = stage.critic_lr if stage.critic_lr is not None else (cfg.lr or stage.lr)
            optimizers["critic"] = torch.optim.Adam(
                trainable_params(stage.critic_modules),
                lr=clr,
                betas=stage.critic_betas or stage.betas,
                **fast,
            )
        base_lrs = {k: o.param_groups[0]["lr"] for k, o in optimizers.items()}
        self._scalers = {
            k: sc for k in optimizers if (sc := grad_scaler(self.info.device, cfg.precision))
        }
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
            start = checked_step(ck, optimizers["main"], cfg.steps)
            for k, state in ck.state.get("grad_scalers", {}).items():
                if k in self._scalers:
                    self._scalers[k].load_state_dict(state)
            best = ck.state.get("best_val_loss") or math.inf
            history = list(ck.state.get("recent_losses", []))
            wall = float(ck.state.get("wall_time_s", 0.0))
        else:
            self._data_dependent_init(index, stage)

        loss_module = wrap_ddp(LossModule(stage.modules, stage.loss), self.info)
        critic_module = (
            wrap_ddp(LossModule(stage.critic_modules, stage.critic_loss), self.info)
            if stage.adversarial
            else None
        )
        for module in (loss_module, critic_module):
            if module is not None and cfg.compile:
                module.compile(backend=cfg.compile)
        amp = partial(autocast, self.info.device, cfg.precision)
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
                        with amp():
                            closs = critic_module(batch, gen)
                        self._check(closs, stage, step, "critic loss")
                        optimizers["critic"].zero_grad(set_to_none=True)
                        optimizer_step(closs, optimizers["critic"], self._scalers.get("critic"))
                with amp():
                    loss = loss_module(batch, gen)
                self._check(loss, stage, step, "loss")
                opt.zero_grad(set_to_none=True)
                if critic_module is not None:
                    for p in trainable_params(stage.critic_modules):
                        p.grad = None
                clip = (
                    (trainable_params(stage.modules), stage.grad_clip) if stage.grad_clip else None
                )
                optimizer_step(loss, opt, self._scalers.get("main"), clip)
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

    def _load_stage(self, stage: Stage, source: Path, flag: str, adapt: bool = False) -> None:
        path, _, part = str(source).partition("#")
        if part and len(stage.modules) != 1:
            raise MrsisrError(
                f"{flag} {stage.name}=...#{part}: stage '{stage.name}' has several parts"
            )
        rename = {k: part for k in stage.modules} if part else None
        load_weights_into(stage.modules, path, rename, adapt=adapt)

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
        with ema_swapped(stage.modules, emas or {}):
            for k in range(min(self.config.val_batches, len(plan.sampler))):
                batch = plan.batch(k, self.info.device)
                gen = torch.Generator().manual_seed(step_seed(self.config.seed, 10_000 + index, k))
                losses.append(float(stage.loss(batch, gen)))
        return float(np.mean(losses)) if losses else math.nan

    def _check(self, loss: torch.Tensor, stage: Stage, step: int, what: str) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise MrsisrError(
                f"stage '{stage.name}': {what} became {float(loss)} at step {step}; lower the learning "
                "rate (`lr`) or resume from an earlier checkpoint"
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
                "grad_scalers": {k: sc.state_dict() for k, sc in self._scalers.items()},
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
