"""Where a model file named by the config is: the config's own path, then diffsvc's layout.

An original Diff-SVC config names its files under `checkpoints/` (vocoder_ckpt:
checkpoints/nsf_hifigan/model, hubert_path: checkpoints/hubert/hubert_soft.pt; ContentVec was
hard-coded at checkpoints/vec/checkpoint_best_legacy_500.pt). diffsvc keeps them under `models/`.
So a path in the original's layout is tried as written, then at diffsvc's place for the same key
(the key's default); each place also accepts the public release's file name in the same folder.
When nothing is found, one line names the config key and every place looked at.
Relative paths are taken from the working directory, as the original did.
"""

from __future__ import annotations

from pathlib import Path

from diffsvc.errors import CheckpointError

# config key -> (the original's path, diffsvc's path). One table: add a key here to give it the fallback.
MODEL_FILE_PLACES = {
    "vocoder_ckpt": ("checkpoints/nsf_hifigan/model", "models/nsf_hifigan/model"),
    "hubert_path": ("checkpoints/hubert/hubert_soft.pt", "models/hubert_soft.pt"),
    "contentvec_path": ("checkpoints/vec/checkpoint_best_legacy_500.pt", "models/checkpoint_best_legacy_500.pt"),
}
ORIGINAL_ROOT = "checkpoints"


def model_file_places(key: str, configured: str, public_name: str | None = None) -> list[Path]:
    """The paths tried for config `key` set to `configured`, in order (see the module docstring)."""
    places = [Path(configured)]
    original, ours = MODEL_FILE_PLACES.get(key, (None, None))
    path = Path(configured)
    if ours is not None and not path.is_absolute() and (path.parts[:1] == (ORIGINAL_ROOT,) or configured == original):
        places.append(Path(ours))
    if public_name:
        places = [q for p in places for q in (p, p.parent / public_name)]
    return list(dict.fromkeys(places))


def find_model_file(key: str, configured: str, public_name: str | None = None) -> Path | None:
    """The first place that exists (a file, or a folder for the vocoder), else None."""
    for place in model_file_places(key, configured, public_name):
        if place.exists():
            return place
    return None


def not_found_message(key: str, configured: str, what: str, public_name: str | None = None,
                      how: str | None = None) -> str:
    """'{configured}: {what} not found (config key {key}; looked at A, B); put the file at A or B
    (or `how`), or set {key} in the config to where it is'."""
    places = model_file_places(key, configured, public_name)
    where = [p for p in places if public_name is None or p.name != public_name]
    looked = ", ".join(str(p) for p in places)
    how = how or f"put the file at {' or '.join(str(p) for p in where)}"
    return f"{configured}: {what} not found (config key {key}; looked at {looked}); {how}, or set {key} in the config to where it is"


def locate_model_file(key: str, configured: str, what: str, public_name: str | None = None,
                      how: str | None = None) -> Path:
    """find_model_file, or CheckpointError with not_found_message."""
    found = find_model_file(key, configured, public_name)
    if found is None:
        raise CheckpointError(not_found_message(key, configured, what, public_name, how))
    return found
