"""The HTTP API (FastAPI) and the web page it serves: submit, follow and fetch jobs through the
same submit, status and results code as the ``posequeue`` command (docs/api.md)."""
