"""One home for reading model files: every .pt/.ckpt/`model` file goes through here.

    identify.py   what a file is when it is not a weight file (missing, empty, a Git LFS pointer,
                  a web page, text, a truncated zip) -> one CheckpointError line
    torch_load.py safe_torch_load (weights_only=True) and restricted_torch_load (fairseq configs)
    unpickler.py  the restricted unpickler: tensors, containers and inert stand-ins, nothing runs
    strict.py     strict state-dict comparison with one good message; weight-norm key renames
    locate.py     where a configured model file is: the config's path (the original's
                  checkpoints/... layout), then diffsvc's models/ layout
"""

from diffsvc.modelfile.identify import check_model_file, identify_placeholder
from diffsvc.modelfile.locate import locate_model_file
from diffsvc.modelfile.strict import StateMismatch, compare_state, load_strict, to_legacy_weight_norm
from diffsvc.modelfile.torch_load import restricted_torch_load, safe_torch_load

__all__ = ["check_model_file", "identify_placeholder", "locate_model_file", "StateMismatch", "compare_state",
           "load_strict", "to_legacy_weight_norm", "restricted_torch_load", "safe_torch_load"]
