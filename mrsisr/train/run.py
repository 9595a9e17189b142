"""Train a recipe from Python: the function behind `mrsisr train`.

Examples:
    ```python
    from mrsisr.train.run import train_recipe
    from mrsisr.train.engine import TrainConfig

    train_recipe("ftddm", data="phantom", size="tiny", out="runs/ftddm-tiny",
                 config=TrainConfig(steps=20, batch_size=4))
    ```
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from mrsisr.data.splits import fold_datasets, resolve_data
from mrsisr.train.engine import StageResult, TrainConfig, Trainer


def train_recipe(
    name: str,
    *,
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] = "phantom",
    fold: int = 0,
    size: str = "small",
    config: TrainConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    reuse: Mapping[str, str | os.PathLike[str]] | None = None,
    init: Mapping[str, str | os.PathLike[str]] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[StageResult]:
    """Train every stage of a recipe on one fold and write the run folder.

    Args:
        name: Recipe name or TOML path.
        out: Run folder.
        data: `"phantom"` or a dataset folder.
        fold: Fold index.
        size: Recipe size.
        config: Run settings (defaults: [`TrainConfig`][mrsisr.train.config.TrainConfig]).
        overrides: Recipe overrides.
        reuse: Stage name → run folder or weights file to load instead of training that stage.
        init: Stage name → run folder or weights file to start that stage from (fine-tuning).
        resume: Continue an interrupted run in `out`.
        progress: Show progress bars.

    Returns:
        One [`StageResult`][mrsisr.train.config.StageResult] per stage.
    """
    import torch

    from mrsisr.recipes import load_recipe

    config = config or TrainConfig()
    recipe = load_recipe(name, size=size, overrides=overrides)
    defaults = recipe.train  # the recipe's [train] table fills what the caller left unset
    config = dataclasses.replace(
        config,
        lr_schedule=config.lr_schedule or defaults.get("lr_schedule", "constant"),
        warmup_steps=(
            config.warmup_steps
            if config.warmup_steps is not None
            else int(defaults.get("warmup_steps", 0))
        ),
    )
    data_dir = resolve_data(data)
    train_set, val_set, _ = fold_datasets(data_dir, fold, seed=config.seed)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    pipeline = recipe.build()
    source = "phantom cohort" if str(data) == "phantom" else "data"
    n_val = 0 if val_set is None else len(val_set)
    note = (
        f"{source} {data_dir}, fold {fold}: {len(train_set)} training maps, {n_val} validation maps"
    )
    trainer = Trainer(
        pipeline,
        recipe,
        train_set,
        val_set,
        out,
        config,
        reuse=reuse,
        init=init,
        data_note=note,
        progress=progress,
    )
    return trainer.run(resume=resume)
