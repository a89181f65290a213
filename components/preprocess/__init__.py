"""preprocess: model-sized uint8 splits, seeded augmentation and the device's preprocessing spec."""
