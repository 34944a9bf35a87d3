"""rnnops: recurrent text classifiers on Reuters in a DVC + Prefect + MLflow workflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rnnops")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
