"""fine_tune: a new head on a pretrained backbone, trained frozen, then gently unfrozen."""
