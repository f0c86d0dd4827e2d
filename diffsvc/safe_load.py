"""Kept for imports: model-file loading lives in `diffsvc.modelfile` (safe_torch_load, check_model_file)."""

from diffsvc.modelfile.identify import check_model_file
from diffsvc.modelfile.torch_load import safe_torch_load

__all__ = ["safe_torch_load", "check_model_file"]
