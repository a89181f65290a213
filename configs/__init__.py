"""Packaged configuration: the device profiles (devices.yaml) and the run presets (presets/*.yaml)."""
