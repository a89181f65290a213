"""convert's split model: int8 extractor + float32 head reproduce the full int8 model."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import litert
from edgetune.components.convert.split import head_layer, split_files, write_split
from edgetune.components.evaluate.core import split_stage
from edgetune.split import EXTRACTOR_FILE, HEAD_FILE, Head, embeddings


@pytest.mark.slow
def test_extractor_and_head_classify_like_the_qat_model(small, tmp_path):
    x_train, _ = support.model_ready(small.data_dir, "train")
    x_test, y_test = support.model_ready(small.data_dir, "test")

    report = write_split(small.pqat.model, x_train[:32], tmp_path)

    extractor = litert.load(str(tmp_path / EXTRACTOR_FILE))
    assert report["extractor"]["input_dtype"] == report["extractor"]["output_dtype"] == "int8"
    head = Head.from_bytes((tmp_path / HEAD_FILE).read_bytes())
    assert head.shape == (report["head"]["embedding_dim"], 3) == (128, 3)
    predicted = head.predict(embeddings(extractor, x_test))
    keras = np.argmax(small.pqat.model.predict(x_test, verbose=0), -1)
    assert np.mean(predicted == keras) >= 0.9
    assert np.mean(predicted == y_test) >= 0.8
    assert set(split_files(tmp_path)) == {EXTRACTOR_FILE, HEAD_FILE}
    # evaluate scores the same combination from the folder
    scored, sizes = split_stage(tmp_path, x_test, list(support.LABELS))
    assert np.array_equal(scored, predicted)
    assert sizes["size_bytes"] == sum(len(b) for b in split_files(tmp_path).values())


def test_a_model_without_a_dense_output_has_no_split():
    import tf_keras as keras

    image = keras.Input((4, 4, 1))
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(image))

    layer, problem = head_layer(model)

    assert layer is None and "not Dense" in problem
