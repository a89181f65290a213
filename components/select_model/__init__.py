"""select_model: the most accurate zoo backbone that fits the device profile."""
