"""The compression search as KFP components: plan the candidates, one branch each, choose.

The DAG runs `candidate` inside a `dsl.ParallelFor` over `search_space`'s list and hands
every branch's output to `choose` with `dsl.Collected` (and to convert and evaluate, which
take the shipped one as choose's verdict names it); on a cluster the branches run in
parallel, in kfp.local in two threads.
"""

from typing import List  # noqa: UP035 - KFP reads Input[List[Model]], not the builtin list

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def search_space(
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    selection: dsl.Input[dsl.Artifact],
    space: dsl.Output[dsl.Artifact],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    enabled: bool = True,
    sparsity: list = [0.5],  # noqa: B006 - KFP takes a literal default
    quantization: list = ["ptq_int8"],  # noqa: B006
    students: list = ["teacher", "digitnet@0.25"],  # noqa: B006
    target_sparsity: float = 0.5,
) -> list:
    """The candidates of the space (the fixed recipe when off); the teacher's logits once."""
    from edgetune.components.common import tracking
    from edgetune.components.search import space as plan
    from edgetune.components.search.core import SearchConfig
    from edgetune.components.select_model.core import Selection

    with tracking.component_run(
        "search_space", run_name, pipeline_run_id, tracking_uri, experiment
    ):
        config = SearchConfig(enabled=enabled, sparsity=sparsity, quantization=quantization,
                              students=students)  # fmt: skip
        tracking.log_params(config, target_sparsity=target_sparsity)
        device = Selection.read(selection.path).device
        return plan.plan(config, device, target_sparsity, float_model.path, data.path, space.path)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def candidate(
    spec: dict,
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    selection: dsl.Input[dsl.Artifact],
    space: dsl.Input[dsl.Artifact],
    model: dsl.Output[dsl.Model],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    prune_epochs: int = 3,
    prune_learning_rate: float = 1e-4,
    qat_epochs: int = 2,
    qat_learning_rate: float = 5e-5,
    batch_size: int = 32,
    representative_samples: int = 200,
    distill_alpha: float = 0.5,
    distill_temperature: float = 4.0,
    distill_epochs: int = 8,
    seed: int = 0,
):
    """One candidate: its student, pruned and quantized, measured on model.tflite; a nested run."""
    from edgetune.components.common import tracking
    from edgetune.components.convert.core import ConvertConfig
    from edgetune.components.prune.core import PruneConfig
    from edgetune.components.qat.core import QatConfig
    from edgetune.components.search import branch
    from edgetune.components.search import space as plan
    from edgetune.components.search.core import CandidateSpec, SearchConfig
    from edgetune.components.select_model.core import Selection

    chosen = CandidateSpec.from_dict(spec)
    with tracking.component_run(
        f"candidate:{chosen.name}", run_name, pipeline_run_id, tracking_uri, experiment
    ):
        search = SearchConfig(distill_alpha=distill_alpha, distill_temperature=distill_temperature,
                              distill_epochs=distill_epochs)  # fmt: skip
        configs = branch.BranchConfigs(
            PruneConfig(epochs=prune_epochs, learning_rate=prune_learning_rate, batch_size=batch_size, seed=seed),
            QatConfig(epochs=qat_epochs, learning_rate=qat_learning_rate, batch_size=batch_size, seed=seed),
            ConvertConfig(representative_samples=representative_samples, seed=seed),
            search.distill_settings(seed),
        )  # fmt: skip
        tracking.log_params(chosen.to_dict(), configs.distill, prefix="")
        device = Selection.read(selection.path).device
        record = branch.run_candidate(chosen, data.path, float_model.path, plan.load_logits(space.path),
                                      device, configs, model.path)  # fmt: skip
        record.write(model.path)
        tracking.record(record, model)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def choose(
    data: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    candidates: dsl.Input[List[dsl.Model]],  # noqa: UP006
    report: dsl.Output[dsl.Artifact],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    max_drop_points: float = 1.0,
    champion_margin_points: float = 0.0,
) -> dict:
    """The rule over every branch and the serving champion; search.json and the Pareto plot.

    Runs every time (the champion may have changed); returns the verdict
    (`SearchVerdict`: the shipped candidate and the gate's check) as a parameter, so the
    steps after it are cached by its value, not by this run's report.
    """
    import tempfile

    from edgetune.components.common import tracking
    from edgetune.components.search import choose as rule
    from edgetune.components.select_model.core import Selection

    with tracking.component_run("choose", run_name, pipeline_run_id, tracking_uri, experiment):
        tracking.log_params(
            max_drop_points=max_drop_points, champion_margin_points=champion_margin_points
        )
        device = Selection.read(selection.path).device
        with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
            found = tracking.champion_model(tmp)
            champion = rule.champion_here(*found, data.path) if found else None
        result = rule.choose_artifacts([c.path for c in candidates], data.path, device, max_drop_points,
                                       report.path, champion=champion,
                                       champion_margin_points=champion_margin_points)  # fmt: skip
        result.write(report.path)
        tracking.record(result, report)
    return result.verdict()
