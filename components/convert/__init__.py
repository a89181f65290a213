"""convert: the float32 .tflite baseline and the full-integer int8 .tflite, checked in LiteRT."""
