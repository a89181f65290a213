"""The declaration of every run parameter, and everything derived from it, agree."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edgetune.components.fine_tune.core import FineTuneConfig
from edgetune.errors import EdgetuneError
from edgetune.pipelines import parameters
from edgetune.pipelines.edgetune_pipeline import edgetune_pipeline
from edgetune.pipelines.parameters import DECLARED, FIXED, MODELS, SOURCES
from edgetune.step_config import value_range

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- parameters:begin"
END = "<!-- parameters:end -->"


def test_the_dag_signature_is_the_declaration_names_types_and_defaults():
    signature = inspect.signature(edgetune_pipeline.pipeline_func).parameters

    assert list(signature) == list(DECLARED)
    for name, p in signature.items():
        declared = DECLARED[name]
        assert p.annotation is declared.annotation, name
        if declared.required:
            assert p.default is inspect.Parameter.empty, name
        else:
            assert p.default == declared.default, name
            assert type(p.default) is declared.annotation, name


def test_the_dag_defaults_are_the_measured_default_run():
    d = parameters.D
    epochs = (d.head_epochs, d.unfreeze_epochs, d.patience, d.prune_epochs, d.qat_epochs)
    assert epochs == (4, 4, 3, 3, 2)
    assert d.augment == {
        "copies": 2, "translate": 0.1, "rotate_degrees": 10.0, "zoom": 0.1,
        "brightness": 0.1, "contrast": 0.1, "flip_horizontal": False, "flip_vertical": False,
    }  # fmt: skip


def test_every_model_field_is_a_run_parameter_or_fixed_by_its_step():
    mapped = {target for targets in SOURCES.values() for target in targets}
    for model in MODELS:
        for field in model.model_fields:
            assert ((model, field) in mapped) != ((model, field) in FIXED), (model, field)
    assert len(mapped) == sum(len(t) for t in SOURCES.values())  # no field fed twice


@pytest.mark.parametrize("name", [n for n, t in SOURCES.items() if len(t) > 1])
def test_a_shared_parameter_means_the_same_in_every_step(name):
    infos = [model.model_fields[field] for model, field in SOURCES[name]]
    first = infos[0]
    for info in infos[1:]:
        assert (info.annotation, info.default, info.metadata) == (
            first.annotation,
            first.default,
            first.metadata,
        )


def test_every_parameter_has_help_and_a_range_when_numeric():
    for p in DECLARED.values():
        assert p.help, p.name
        if p.annotation in (int, float):
            assert value_range(p.field), p.name


def test_coercion_makes_an_int_a_float_and_refuses_the_rest():
    assert DECLARED["min_accuracy"].coerce(1) == 1.0
    assert type(DECLARED["min_accuracy"].coerce(1)) is float
    assert DECLARED["augment"].coerce({"copies": 0}) == {**parameters.D.augment, "copies": 0}
    with pytest.raises(EdgetuneError) as error:
        DECLARED["target_sparsity"].coerce(1.5)
    assert (
        str(error.value) == "pipeline parameter target_sparsity=1.5; accepted: a number in [0, 1)"
    )
    with pytest.raises(EdgetuneError, match=r"^pipeline parameter augment: copies=99; accepted: "):
        DECLARED["augment"].coerce({"copies": 99})


def test_a_step_config_keeps_keyword_construction_and_is_frozen():
    config = FineTuneConfig(head_epochs=1, batch_size=8)

    assert (config.head_epochs, config.unfreeze_epochs, config.batch_size) == (1, 4, 8)
    assert config.model_dump()["batch_size"] == 8
    with pytest.raises(ValueError, match="frozen"):
        config.head_epochs = 2
    with pytest.raises(EdgetuneError, match="fine_tune unknown field 'epochs'; accepted: head_"):
        FineTuneConfig(epochs=3)


def test_the_table_lists_every_parameter_once_with_its_default():
    text = parameters.table()
    names = [line.split()[0] for line in text.splitlines()[1:]]

    top = [n for n in names if "." not in n]
    assert top == list(DECLARED)
    assert len(names) == len(set(names))
    head = next(line for line in text.splitlines() if line.startswith("head_epochs "))
    assert head.split()[:4] == ["head_epochs", "int", "4", ">="]


def test_the_readme_table_is_the_generated_one():
    text = README.read_text()
    begin = text.index("\n", text.index(BEGIN)) + 1
    assert text[begin : text.index(END)] == parameters.table(markdown=True), (
        "README parameter table is stale: paste `edgetune params --format markdown` between the markers"
    )
