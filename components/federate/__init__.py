"""federate: federated averaging of the devices' personal heads, gated and rolled out."""
