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
    """The paths tried for config `key` set to `configured`, in order (see the module docstring).

    A path in the original's layout (under checkpoints/) is followed by diffsvc's place for the key;
    diffsvc's default place is followed by the original's (an original project whose config does
    not name the file, like ContentVec's hard-coded path). public_name: each place's folder may hold
    the public release's file name instead."""
    places = _base_places(key, configured)
    if public_name:
        places = [q for p in places for q in (p, p.parent / public_name)]
    return list(dict.fromkeys(places))


def _base_places(key: str, configured: str) -> list[Path]:
    path = Path(configured)
    original, ours = MODEL_FILE_PLACES.get(key, (None, None))
    if ours is None or path.is_absolute():
        return [path]
    if path.parts[:1] == (ORIGINAL_ROOT,) or path == Path(original):
        return list(dict.fromkeys([path, Path(ours)]))
    if path == Path(ours):
        return [path, Path(original)]
    return [path]


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
    looked = ", ".join(str(p) for p in model_file_places(key, configured, public_name))
    how = how or f"put the file at {' or '.join(str(p) for p in _base_places(key, configured))}"
    return f"{configured}: {what} not found (config key {key}; looked at {looked}); {how}, or set {key} in the config to where it is"


def locate_model_file(key: str, configured: str, what: str, public_name: str | None = None,
                      how: str | None = None) -> Path:
    """find_model_file, or CheckpointError with not_found_message."""
    found = find_model_file(key, configured, public_name)
    if found is None:
        raise CheckpointError(not_found_message(key, configured, what, public_name, how))
    return found
