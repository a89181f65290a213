"""select_model as a KFP component: the zoo backbone that fits the device profile."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_model(
    device_profile: str,
    selection: dsl.Output[dsl.Artifact],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    devices_file: str = "",
    zoo_file: str = "",
    model_id: str = "",
    domain: str = "handwritten-digits",
    allow_download: bool = False,
    model_uri: str = "",
    feature_layer: str = "",
    model_normalization: str = "",
) -> str:
    """Chooses the backbone; writes selection.json (chosen entry, device, every verdict)."""
    from edgetune import config
    from edgetune.components.common import tracking
    from edgetune.components.select_model import core
    from edgetune.zoo.registry import load_zoo

    with tracking.component_run(
        "select_model", run_name, pipeline_run_id, tracking_uri, experiment
    ):
        tracking.log_params(dict(device_profile=device_profile, model_id=model_id, domain=domain,
                                 allow_download=allow_download, model_uri=model_uri,
                                 feature_layer=feature_layer,
                                 model_normalization=model_normalization))  # fmt: skip
        device = config.device_profile(device_profile, devices_file or None)
        zoo = load_zoo(zoo_file or None)
        chosen = core.select_source(
            zoo,
            device,
            model_id=model_id,
            domain=domain,
            allow_download=allow_download,
            model_uri=model_uri,
            feature_layer=feature_layer,
            model_normalization=model_normalization,  # fmt: skip
        )
        chosen.write(selection.path)
        tracking.record(chosen, selection)
    return chosen.entry.id
