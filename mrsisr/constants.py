"""Constants shared by every layer: the metabolites mrsisr knows, in the codes' order.

`Condition.metabolite` carries indices into [`METABOLITES`][mrsisr.constants.METABOLITES]; the
data loaders, the datasets and MUNet's metabolite embedding all use this one tuple.
"""

from __future__ import annotations

METABOLITES: tuple[str, ...] = ("tCr", "tCho", "NAA", "Glu", "Ins", "Gln", "Gly")
"""The seven metabolites of the paper's cohort, in the order of their integer codes."""
