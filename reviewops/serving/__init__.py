"""The prediction API: FastAPI app, model manager, micro-batching and the prediction log."""

from reviewops.serving.app import create_app

__all__ = ["create_app"]
