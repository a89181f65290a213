"""deploy: sign the bundle, roll it out to the device agents, roll back the unhealthy."""
