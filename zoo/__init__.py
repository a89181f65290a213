"""The model zoo: the registry of pretrained backbones, their architectures and the embedded weights."""
