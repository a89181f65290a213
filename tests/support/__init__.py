"""What several test folders share: tiny learnable data and models (models), and a real tiny
int8 model, keys, bundles and live agents (agents). tests/conftest.py registers the fixtures.
"""
