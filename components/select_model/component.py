"""select_model as a KFP component: the zoo backbone that fits the device profile."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_model(
    device_profile: str,
    selection: dsl.Output[dsl.Artifact],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    devices_file: str = "",
    zoo_file: str = "",
    model_id: str = "",
    domain: str = "handwritten-digits",
    allow_download: bool = False,
) -> str:
    """Chooses the backbone; writes selection.json (chosen entry, device, every verdict)."""

    import mlflow

    from edgetune import config, files
    from edgetune.components.common import tracking
    from edgetune.components.select_model import core
    from edgetune.zoo.registry import load_zoo

    with tracking.component_run(
        "select_model",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        tracking.log_params(
            {
                "device_profile": device_profile,
                "model_id": model_id,
                "domain": domain,
                "allow_download": allow_download,
            }
        )
        device = config.device_profile(device_profile, devices_file or None)
        chosen = core.select_model(
            load_zoo(zoo_file or None),
            device,
            model_id=model_id,
            domain=domain,
            allow_download=allow_download,
        )
        result = chosen.to_dict()
        files.write_json(files.artifact_dir(selection.path) / files.SELECTION, result)
        mlflow.log_dict(result, files.SELECTION)
        mlflow.set_tag("zoo_id", chosen.entry.id)
        for candidate in chosen.candidates:
            print(
                f"{'CHOSEN  ' if candidate.chosen else 'rejected'} {candidate.id}: {'; '.join(candidate.reasons) or 'best fit'}"
            )
        model = {
            "zoo_id": chosen.entry.id,
            "params": chosen.entry.params,
            "input_shape": list(chosen.entry.input_shape),
        }
        tracking.log_summary_part({"model": {**model, "device": device.name}})
        selection.metadata.update(model)
    return chosen.entry.id
