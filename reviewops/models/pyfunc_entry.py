"""MLflow "model from code" entry: logging points MLflow at this file instead of pickling a Python
object, so loading a registered model never unpickles code. Loading needs the `reviewops` package
installed (every ReviewOps image and venv has it): the model runs the installed library's code,
never a stale copy stored with the model."""

import mlflow.models

from reviewops.models.pyfunc import SentimentPyfunc

mlflow.models.set_model(SentimentPyfunc())
