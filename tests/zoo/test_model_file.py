"""A user's whole model file: Keras 2 .h5, Keras 3 .keras/.h5, SavedModel; flat tf_keras out.

The files are written by the tests themselves: tf_keras saves Keras 2 files, `keras` (Keras 3,
installed beside tf_keras) saves Keras 3 ones.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgetune  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow
from edgetune.errors import EdgetuneError
from edgetune.zoo import feature_layer as fl
from edgetune.zoo.model_file import load_model_file
from edgetune.zoo.model_source import cut


def nested_classifier(k, path, channels, dense_name=None):
    """A classifier with a nested backbone and automatic layer names, saved by `k`.

    `k` is tf_keras (a Keras 2 file) or keras (Keras 3; .keras or .h5 by the suffix).
    """
    i = k.Input((16, 16, channels))
    x = k.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(i)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU(6.0)(x)
    x = k.layers.DepthwiseConv2D(3, padding="same")(x)
    x = k.layers.SeparableConv2D(12, 3, padding="same", activation="relu")(x)
    backbone = k.Model(i, x, name="backbone")
    outer_in = k.Input((16, 16, channels))
    y = k.layers.GlobalAveragePooling2D()(backbone(outer_in))
    y = k.layers.Dropout(0.1)(y)
    model = k.Model(outer_in, k.layers.Dense(5, activation="softmax", name=dense_name)(y))
    rng = np.random.default_rng(1)  # non-trivial BatchNorm statistics
    bn = backbone.layers[2]
    bn.moving_mean.assign(rng.normal(size=8).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2, size=8).astype("float32"))
    model.save(path)
    return model


def k2_nested_classifier(path):
    import tf_keras

    return nested_classifier(tf_keras, path, 1)


def k3_nested_classifier(path):
    import keras

    return nested_classifier(keras, path, 3, dense_name="classes")


def assert_flat_unique(model):
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert not any(hasattr(layer, "layers") for layer in model.layers)


def test_keras2_h5_with_a_nested_backbone_becomes_one_flat_model_with_the_same_outputs(tmp_path):
    original = k2_nested_classifier(tmp_path / "k2.h5")

    loaded = load_model_file(str(tmp_path / "k2.h5"))

    assert loaded.kind == "keras2-h5" and loaded.keras_version.startswith("2.")
    assert_flat_unique(loaded.model)
    assert loaded.tensors_copied == len(original.weights)
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(
        loaded.model.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-6
    )
    # automatic names (conv2d, dense_1, ...) are replaced: tfmot's QAT rewrite collides with them
    assert not any(
        fl_name.startswith(("conv2d", "dense"))
        for fl_name in [la.name for la in loaded.model.layers]
    )
    assert loaded.renamed and all(new.startswith("l0") for new in loaded.renamed.values())


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_file_is_rebuilt_in_tf_keras_with_every_tensor_copied(tmp_path, suffix):
    path = tmp_path / f"k3{suffix}"
    original = k3_nested_classifier(path)

    loaded = load_model_file(str(path))

    assert loaded.kind == f"keras3-{suffix[1:]}" and loaded.keras_version.startswith("3")
    assert type(loaded.model).__module__.startswith("tf_keras")
    assert_flat_unique(loaded.model)
    assert loaded.tensors_copied == len(original.weights) == 12
    assert loaded.max_abs_diff < 1e-5
    # Keras 3 names the depthwise weight `kernel`; it lands in tf_keras' depthwise_kernel
    dw = next(la for la in loaded.model.layers if type(la).__name__ == "DepthwiseConv2D")
    src = next(
        la for la in original.get_layer("backbone").layers if type(la).__name__ == "DepthwiseConv2D"
    )
    np.testing.assert_array_equal(dw.depthwise_kernel.numpy(), np.asarray(src.kernel))


def test_the_feature_layer_is_found_and_a_given_one_checked_with_the_nearest_names(tmp_path):
    loaded = load_model_file(
        str(k3_nested_classifier(tmp_path / "k3.keras") and tmp_path / "k3.keras")
    )

    name, why = fl.find_feature_layer(loaded.model)
    assert type(loaded.model.get_layer(name)).__name__ == "GlobalAveragePooling2D"
    assert "GlobalAveragePooling2D" in why
    assert fl.cut_at(loaded.model, name).output_shape == (None, 12)
    assert fl.find_feature_layer(loaded.model, "classes")[0] == "classes"
    with pytest.raises(
        EdgetuneError, match=r"feature_layer='clases' is not a layer.*nearest: classes"
    ):
        fl.find_feature_layer(loaded.model, "clases", source="k3.keras")


def test_an_all_convolutional_classifier_is_cut_before_its_class_map(tmp_path):
    import tf_keras as k

    i = k.Input((12, 12, 1))
    x = k.layers.Conv2D(6, 3, activation="relu", name="body")(i)
    x = k.layers.Conv2D(3, 3, name="class_map")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    k.Model(i, k.layers.Activation("softmax", name="predictions")(x)).save(tmp_path / "xc.h5")

    loaded = load_model_file(str(tmp_path / "xc.h5"))

    name, why = fl.find_feature_layer(loaded.model)
    assert name == "body" and "class_map" in why
    assert fl.cut_at(loaded.model, name).output_shape == (None, 6)  # pooled feature map


def test_normalization_from_the_model_or_the_override():
    import tf_keras as k

    i = k.Input((8, 8, 3))
    plain = k.Model(i, k.layers.Conv2D(2, 3)(i))
    rescaling = k.Model(i, k.layers.Conv2D(2, 3)(k.layers.Rescaling(1 / 127.5, -1)(i)))

    assert fl.normalization(plain)[0] == {"scale": 1 / 255, "offset": 0.0}
    assert fl.normalization(rescaling)[0] == {"scale": 1.0, "offset": 0.0}
    assert fl.normalization(plain, "symmetric")[0] == {"scale": 2 / 255, "offset": -1.0}
    assert fl.normalization(plain, "0.5,-2")[0] == {"scale": 0.5, "offset": -2.0}
    with pytest.raises(
        EdgetuneError, match="model_normalization='tanh'; accepted: unit, symmetric, raw"
    ):
        fl.normalization(plain, "tanh")


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    import tf_keras as k

    text = tmp_path / "notes.h5"
    text.write_text("not a model")
    with pytest.raises(EdgetuneError, match="notes.h5: not a model file"):
        load_model_file(str(text))
    k2_nested_classifier(tmp_path / "whole.h5")
    data = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(EdgetuneError, match="cut.h5: (unreadable or truncated|cannot load it)"):
        load_model_file(str(tmp_path / "cut.h5"))
    i = k.Input((4,))
    k.Model(i, k.layers.Dense(2)(i)).save_weights(tmp_path / "w.h5")
    with pytest.raises(EdgetuneError, match="w.h5: a weights-only HDF5 file"):
        load_model_file(str(tmp_path / "w.h5"))
    k.Model(i, k.layers.Dense(2)(i)).save(tmp_path / "table.h5")
    with pytest.raises(EdgetuneError, match=r"table.h5: input shape \(4,\) is not an image"):
        load_model_file(str(tmp_path / "table.h5"))
    a, b = k.Input((8, 8, 1)), k.Input((8, 8, 1))
    k.Model([a, b], k.layers.Add()([a, b])).save(tmp_path / "two.h5")
    with pytest.raises(EdgetuneError, match="two.h5: the model has 2 inputs"):
        load_model_file(str(tmp_path / "two.h5"))
    with pytest.raises(EdgetuneError, match="gone.keras: no such model file"):
        load_model_file(str(tmp_path / "gone.keras"))


def test_a_keras3_layer_without_a_tf_keras_twin_is_named(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    i = keras.Input((8, 8, 1))
    keras.Model(i, Doubler(name="doubler")(keras.layers.Conv2D(2, 3)(i))).save(tmp_path / "c.keras")

    with pytest.raises(
        EdgetuneError, match=r"c.keras: layer 'doubler' \(Doubler\) has no tf_keras equivalent"
    ):
        load_model_file(str(tmp_path / "c.keras"))


@pytest.mark.slow  # writing a SavedModel traces every function: about a minute here
def test_a_tf_keras_savedmodel_folder_loads_like_an_h5(tmp_path):
    import tf_keras

    original = nested_classifier(tf_keras, tmp_path / "k2.h5", 1)
    original.save(tmp_path / "saved", save_format="tf")

    loaded = load_model_file(str(tmp_path / "saved"))

    assert loaded.kind == "savedmodel"
    assert_flat_unique(loaded.model)
    assert loaded.tensors_copied == len(original.weights) and loaded.max_abs_diff < 1e-6
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgetuneError, match="empty: a folder but not a SavedModel"):
        load_model_file(str(tmp_path / "empty"))


def test_a_feature_layer_typo_lists_the_nearest_names_as_the_file_spells_them(tmp_path):
    import tf_keras as k

    model = k.Sequential(
        [k.Input((8, 8, 1)), k.layers.Conv2D(4, 3), k.layers.Flatten(), k.layers.Dense(2)]
    )
    model.save(tmp_path / "auto.h5")
    loaded = load_model_file(str(tmp_path / "auto.h5"))
    # automatic names count up per process (flatten_3 after other tests): read the file's own
    original = model.layers[1].name
    flat_name = loaded.renamed[original]

    with pytest.raises(EdgetuneError, match=rf"nearest: {original} \({flat_name}\)"):
        cut(loaded, original[:4] + original[5:])  # one letter dropped
    backbone, name, _ = cut(loaded, original)  # the file's own name is accepted
    assert name == flat_name and backbone.output_shape == (None, 144)
