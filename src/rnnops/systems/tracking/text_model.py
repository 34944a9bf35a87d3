"""The text-in pyfunc model: raw text in, topics out, with its vocabulary and decision."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _pyfunc_class():
    import mlflow.pyfunc

    class TopicModel(mlflow.pyfunc.PythonModel):
        """Raw news text in (a ``text`` column), topics with scores out."""

        def load_context(self, context):
            from rnnops.core.predictor import TopicPredictor

            self.predictor = TopicPredictor.from_files(
                Path(context.artifacts["keras_model"]),
                Path(context.artifacts["vocab"]),
                Path(context.artifacts["decision"]),
            )

        def predict(self, context, model_input, params=None):
            import pandas as pd

            if isinstance(model_input, pd.DataFrame):
                texts = model_input["text"].astype(str).tolist()
            else:
                texts = [str(t) for t in model_input]
            return self.predictor.predict(texts)

    return TopicModel


def log_text_model(
    keras_path: Path, vocab_path: Path, decision_path: Path, sample: list[str], name: str = "model"
) -> str:
    """Log the pyfunc that takes raw text under ``name`` (the model's); return its URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from rnnops import __version__
    from rnnops.core.predictor import TopicPredictor

    predictor = TopicPredictor.from_files(keras_path, vocab_path, decision_path)
    example_in = pd.DataFrame({"text": sample})
    signature = infer_signature(example_in, predictor.predict(sample))
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=_pyfunc_class()(),
        artifacts={
            "keras_model": str(keras_path),
            "vocab": str(vocab_path),
            "decision": str(decision_path),
        },
        signature=signature,
        input_example=example_in,
        pip_requirements=[f"rnnops=={__version__}"],
    )
    return info.model_uri


def load_text_model(uri: str):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)
