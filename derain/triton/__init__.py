"""Triton Inference Server: model repositories (repository.py), the Python-backend model they may
carry (python_model.py), and a local server for tests and benchmarks (local_server.py)."""
