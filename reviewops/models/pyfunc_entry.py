"""MLflow "model from code" entry: logging points MLflow at this file instead of pickling a Python
object, so loading a registered model never unpickles code."""

import mlflow.models

from reviewops.models.pyfunc import SentimentPyfunc

mlflow.models.set_model(SentimentPyfunc())
