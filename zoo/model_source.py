"""A user's model file as a zoo entry: select_model judges it, fine_tune builds on it.

The entry carries what the file says about itself (input shape, normalization, the feature
layer the new head goes on) and its costs counted from the cut model (zoo.costs), so the
rest of the pipeline treats the file like any zoo backbone.
"""

from __future__ import annotations

import logging
from typing import Any

from edgetune.zoo import costs, feature_layer
from edgetune.zoo.model_file import LoadedModel, load_model_file
from edgetune.zoo.registry import MODEL_FILE_ARCHITECTURE, ZooEntry

log = logging.getLogger(__name__)
# Phase 2 of fine_tune opens this many of the backbone's last layers unless set otherwise.
UNFREEZE_TOP_LAYERS = 20


def entry_for_model_file(
    uri: str, *, feature_layer_name: str = "", model_normalization: str = ""
) -> tuple[ZooEntry, dict[str, Any]]:
    """Loads the file, finds its feature layer, counts its costs; returns its zoo entry.

    Returns:
        The entry (architecture "model-file") and a report: how the file loaded (kind,
        Keras version, load time, tensors copied, max output difference), the feature
        layer and why, the normalization and why, and the costs.

    Raises:
        EdgetuneError: the file cannot be used (named, with the reason).
    """
    loaded = load_model_file(uri)
    backbone, layer, why = cut(loaded, feature_layer_name)
    norm, norm_why = feature_layer.normalization(loaded.model, model_normalization)
    cost = costs.model_costs(backbone)
    height, width, channels = feature_layer.check_input(backbone, uri)
    log.info("model file %s: new head after %s (%s); input %s", uri, layer, why, norm_why)
    entry = ZooEntry(
        id=f"file:{uri.rstrip('/').rsplit('/', 1)[-1]}",
        architecture=MODEL_FILE_ARCHITECTURE,
        arguments={"feature_layer": layer},
        input_shape=(height, width, channels),
        normalization=norm,
        weights={"source": "model-file", "uri": uri},
        params=cost.params,
        macs=cost.macs,
        peak_activation_bytes=costs.peak_activation_bytes(backbone),
        arena_bytes=cost.arena_bytes,
        top1=0.0,
        unfreeze_top_layers=UNFREEZE_TOP_LAYERS,
        domain="",
        description=f"{loaded.kind} model file (Keras {loaded.keras_version or '?'})",
    )
    report = {
        **loaded.report(),
        "feature_layer": layer,
        "feature_layer_reason": why,
        "normalization": norm,
        "normalization_reason": norm_why,
        "params": cost.params,
        "macs": cost.macs,
        "arena_bytes": cost.arena_bytes,
    }
    return entry, report


def cut(loaded: LoadedModel, requested: str = "") -> tuple[Any, str, str]:
    """(backbone up to the feature layer, its name, why it was chosen)."""
    name = loaded.renamed.get(requested, requested)
    name = loaded.renamed.get(name, name)  # renamed again when flattened (zoo.applications)
    layer, why = feature_layer.find_feature_layer(
        loaded.model, name, source=loaded.uri, renamed=loaded.renamed
    )
    return feature_layer.cut_at(loaded.model, layer), layer, why


def build_from_file(entry: ZooEntry, pretrained: bool = True) -> Any:
    """The entry's backbone from its model file; `pretrained=False` re-initialises it."""
    backbone, _, _ = cut(load_model_file(entry.weights["uri"]), entry.arguments["feature_layer"])
    if pretrained:
        return backbone
    import tf_keras

    return tf_keras.models.clone_model(backbone)  # same graph, fresh initial weights
