"""Declarative recipes: load, validate, override and build the methods of the zoo.

A recipe is a TOML file of data only. Apart from the `[recipe]` table of metadata and the
`[sizes.*]` overrides, every table is one registry lookup: a `type` plus keyword arguments of the
registered class. Which registry a table uses follows from its name:

| table | registry |
|---|---|
| `pipeline` | `PIPELINES` |
| `schedule` | `SCHEDULES` |
| `initializer` | `INITIALIZERS` |
| `sampler` | `SAMPLERS` |
| any other name (`denoiser`, `flow`, `generator`, `discriminator`, `network`, `critic`, ...) | `BACKBONES` |

A table nested inside another (`[initializer.flow]`) that has a `type` is built first and passed to
its parent as the keyword of the same name. The built top-level parts are passed to the pipeline
class as keywords named after their tables.

Sizes: the tables as written are the `paper` size; `[sizes.small.<table>]` and
`[sizes.tiny.<table>]` override keys of those tables. An override that changes `type` replaces the
table instead of merging into it.

Examples:
    Run FTDDM with DPM-Solver++ at 10 steps instead of the ancestral sampler:

    >>> from mrsisr.recipes import load_recipe
    >>> recipe = load_recipe("ftddm", size="tiny",
    ...                      overrides={"sampler": {"type": "dpm_solver_pp", "steps": 10}})
    >>> recipe.tables["sampler"]
    {'type': 'dpm_solver_pp', 'steps': 10}

    The same in TOML, in a file of your own:

    ```toml
    [recipe]
    name = "ftddm_dpm10"
    base = "ftddm"

    [sampler]
    type = "dpm_solver_pp"
    steps = 10
    ```
"""

from mrsisr.recipes.core import (
    META_KEYS,
    SIZES,
    TRAIN_KEYS,
    Recipe,
    load_recipe,
    register_zoo,
    slot_role,
    zoo_dir,
)
from mrsisr.recipes.toml_out import dumps_toml
from mrsisr.recipes.validation import accepted_keys, validate_recipe

__all__ = [
    "META_KEYS",
    "SIZES",
    "TRAIN_KEYS",
    "Recipe",
    "accepted_keys",
    "dumps_toml",
    "load_recipe",
    "register_zoo",
    "slot_role",
    "validate_recipe",
    "zoo_dir",
]
