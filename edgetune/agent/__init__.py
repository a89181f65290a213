"""The device agent: installs signed bundles, serves the model in LiteRT, rolls back the unhealthy."""
