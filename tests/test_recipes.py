"""Recipes: sizes, overrides, inheritance, validation messages, building, TOML output."""

from __future__ import annotations

import textwrap

import pytest
import tomllib
import torch
from torch import nn

from mrsisr.errors import RecipeError, UnknownNameError
from mrsisr.pipelines import DiffusionPipeline, count_parameters
from mrsisr.recipes import dumps_toml, load_recipe
from mrsisr.registry import Registry


class ToySchedule:
    """Linear toy schedule."""

    def __init__(self, T: int = 10):
        self.T = T
        self.betas = torch.cat([torch.zeros(1), torch.full((T,), 0.1)]).double()
        self.gammas = torch.cumprod(1 - self.betas, 0)

    def q_sample(self, x0, t, noise):
        g = self.gammas[t].view(-1, 1, 1, 1).to(x0.dtype)
        return g.sqrt() * x0 + (1 - g).sqrt() * noise


class ToyNet(nn.Module):
    """A 1x1 convolution of a given width."""

    def __init__(self, width: int = 4, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 1, bias=bias)


class ToyInit(nn.Module):
    """Initializer with a generator and a discriminator."""

    nfe = 1

    def __init__(self, generator: nn.Module, discriminator: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.generator, self.discriminator, self.temperature = generator, discriminator, temperature

    def parts(self):
        return {"generator": (self.generator, True), "discriminator": (self.discriminator, False)}

    def sample(self, cond, t_start, schedule, *, generator=None):
        return torch.zeros_like(cond.lr)


class ToySampler:
    """Counts steps."""

    def __init__(self, steps: int | None = None, tau_d: float = 1.0):
        self.steps, self.tau_d = steps, tau_d

    def nfe(self, t_start):
        return self.steps or t_start


@pytest.fixture
def registries():
    regs = {
        role: Registry(role, entry_points=lambda g: [])
        for role in (
            "initializers",
            "backbones",
            "samplers",
            "conditioning",
            "schedules",
            "pipelines",
            "recipes",
        )
    }
    regs["schedules"].register("toy", ToySchedule)
    regs["backbones"].register("toy_net", ToyNet)
    regs["initializers"].register("toy_init", ToyInit)
    regs["samplers"].register("toy_sampler", ToySampler)
    regs["samplers"].register("other_sampler", ToySampler)
    regs["pipelines"].register("diffusion", DiffusionPipeline)
    return regs


RECIPE = """
[recipe]
name = "toy"
title = "A toy method"
description = "For tests."

[pipeline]
type = "diffusion"
t_start = 5

[schedule]
type = "toy"
T = 10

[initializer]
type = "toy_init"
temperature = 0.9

[initializer.generator]
type = "toy_net"
width = 8

[initializer.discriminator]
type = "toy_net"
width = 3

[denoiser]
type = "toy_net"
width = 16

[sampler]
type = "toy_sampler"
tau_d = 0.9

[sizes.tiny.denoiser]
width = 2

[sizes.tiny.initializer.generator]
width = 1

[sizes.small.sampler]
type = "other_sampler"
steps = 3
"""


def write(tmp_path, text, name="toy.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_paper_size_is_the_base(tmp_path, registries):
    r = load_recipe(write(tmp_path, RECIPE), registries=registries)
    assert r.name == "toy" and r.size == "paper"
    assert r.tables["denoiser"] == {"type": "toy_net", "width": 16}
    assert r.sizes == ("paper", "small", "tiny")


def test_size_overrides_merge_keys_and_nested_tables(tmp_path, registries):
    r = load_recipe(write(tmp_path, RECIPE), size="tiny", registries=registries)
    assert r.tables["denoiser"] == {"type": "toy_net", "width": 2}
    assert r.tables["initializer"]["generator"] == {"type": "toy_net", "width": 1}
    assert r.tables["initializer"]["temperature"] == 0.9  # untouched keys stay


def test_override_changing_type_replaces_the_table(tmp_path, registries):
    r = load_recipe(write(tmp_path, RECIPE), size="small", registries=registries)
    assert r.tables["sampler"] == {"type": "other_sampler", "steps": 3}  # tau_d dropped


def test_python_overrides_nested_and_dotted(tmp_path, registries):
    path = write(tmp_path, RECIPE)
    a = load_recipe(path, overrides={"sampler": {"steps": 7}}, registries=registries)
    b = load_recipe(path, overrides={"sampler.steps": 7}, registries=registries)
    assert (
        a.tables["sampler"]
        == b.tables["sampler"]
        == {"type": "toy_sampler", "tau_d": 0.9, "steps": 7}
    )


def test_toml_override_through_base(tmp_path, registries, monkeypatch):
    write(tmp_path, RECIPE)
    child = write(
        tmp_path,
        """
        [recipe]
        name = "toy_fast"
        base = "%s"

        [sampler]
        type = "other_sampler"
        steps = 2
        """
        % (tmp_path / "toy.toml"),
        name="child.toml",
    )
    r = load_recipe(child, size="tiny", registries=registries)
    assert r.name == "toy_fast"
    assert r.tables["sampler"] == {"type": "other_sampler", "steps": 2}
    assert r.tables["denoiser"]["width"] == 2  # the base's tiny size still applies
    assert "base" not in r.meta


def test_build_wires_parts_counts_and_nfe(tmp_path, registries):
    r = load_recipe(write(tmp_path, RECIPE), registries=registries)
    pipe = r.build()
    assert isinstance(pipe, DiffusionPipeline)
    assert pipe.t_start == 5 and pipe.nfe == 1 + 5
    assert pipe.initializer.temperature == 0.9
    counts = count_parameters(pipe)
    assert counts["denoiser"] == 16 * 2 and counts["generator"] == 8 * 2
    assert counts["discriminator"] == 3 * 2
    assert counts["total"] == 16 * 2 + 8 * 2  # discriminator listed, not counted


def test_resolved_recipe_round_trips_through_toml(tmp_path, registries):
    r = load_recipe(write(tmp_path, RECIPE), size="tiny", registries=registries)
    text = r.to_toml()
    again = tomllib.loads(text)
    assert again["recipe"]["size"] == "tiny"
    assert {k: v for k, v in again.items() if k != "recipe"} == r.tables
    # and the printed recipe loads as a recipe that resolves to the same tables
    printed = write(tmp_path, text.replace('size = "tiny"\n', ""), name="printed.toml")
    assert load_recipe(printed, registries=registries).tables == r.tables


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ('type = "toy_sampler"', 'type = "toy_samplr"'),
            r"toy\.toml: \[sampler\] key 'type': unknown samplers entry 'toy_samplr'\. Did you mean 'toy_sampler'\?",
        ),
        (
            ("tau_d = 0.9", "tau = 0.9"),
            r"toy\.toml: \[sampler\] unknown key 'tau' for samplers 'toy_sampler'\. Did you mean 'tau_d'\?",
        ),
        (
            ("width = 8", "widht = 8"),
            r"toy\.toml: \[initializer\.generator\] unknown key 'widht' for backbones 'toy_net'",
        ),
        (
            ("[sizes.tiny.denoiser]", "[sizes.tiny.decoder]"),
            r"toy\.toml: \[sizes\.tiny\.decoder\] overrides a table that the recipe does not have",
        ),
        (
            ('title = "A toy method"', 'title = "A toy method"\nauthor = "x"'),
            r"toy\.toml: \[recipe\] unknown key 'author'",
        ),
        (("[schedule]\ntype", "[schedule]\nkind"), r"toy\.toml: \[schedule\] has no 'type' key"),
        (
            ("t_start = 5", "t_start = 5\nimport = 'os'"),
            r"toy\.toml: \[pipeline\] unknown key 'import' for pipelines 'diffusion'",
        ),
        (("[sampler]", "[sampler]]"), r"toy\.toml: not valid TOML"),
        (
            ("[sampler]", '[extra]\ntype = "toy_net"\n\n[sampler]'),
            r"toy\.toml: \[extra\] is not a part of pipeline 'diffusion'",
        ),
    ],
)
def test_bad_recipes_name_file_table_and_key(tmp_path, registries, edit, expected):
    old, new = edit
    assert old in RECIPE
    path = write(tmp_path, RECIPE.replace(old, new, 1))
    with pytest.raises(RecipeError, match=expected):
        load_recipe(path, registries=registries)


def test_unknown_size(tmp_path, registries):
    with pytest.raises(
        RecipeError, match=r"no size 'huge'; this recipe defines paper, small, tiny"
    ):
        load_recipe(write(tmp_path, RECIPE), size="huge", registries=registries)


def test_constructor_rejection_names_the_table(tmp_path, registries):
    path = write(tmp_path, RECIPE.replace("t_start = 5", "t_start = 50"))
    with pytest.raises(
        RecipeError, match=r"\[pipeline\] type 'diffusion' rejected its arguments: t_start"
    ):
        load_recipe(path, registries=registries).build()


def test_unknown_recipe_name_lists_the_zoo():
    with pytest.raises(UnknownNameError, match="unknown recipes entry 'no_such_recipe'"):
        load_recipe("no_such_recipe")


def test_dumps_toml_values():
    text = dumps_toml({"a": {"s": 'say "hi"', "b": True, "i": 3, "f": 0.5, "l": (1, 2)}})
    assert tomllib.loads(text) == {"a": {"s": 'say "hi"', "b": True, "i": 3, "f": 0.5, "l": [1, 2]}}


def test_a_component_that_breaks_its_role_contract_is_refused_at_validation(registries, tmp_path):
    """A registered initializer without `sample` fails when the recipe is validated, not later."""

    class NoSample(nn.Module):
        nfe = 1

    registries["initializers"].register("no_sample", NoSample)
    path = tmp_path / "bad.toml"
    path.write_text(
        '[recipe]\nname = "bad"\n[pipeline]\ntype = "diffusion"\nt_start = 5\n'
        '[schedule]\ntype = "toy"\n[initializer]\ntype = "no_sample"\n'
        '[denoiser]\ntype = "toy_net"\n[sampler]\ntype = "toy_sampler"\n'
    )
    with pytest.raises(
        RecipeError, match=r"\[initializer\] initializers 'no_sample' .* has no sample"
    ):
        load_recipe(path, registries=registries)
