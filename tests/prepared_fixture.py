"""A small synthetic prepared-data folder, written through the public `diffsvc.data.prepared` API,
so training tests need neither audio nor `diffsvc preprocess`.

The mels are learnable on purpose: each piece's mel is a smooth function of its content units and
f0 (plus a little noise), so a model that trains at all lowers its loss quickly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsvc.data.prepared import Manifest, Piece, dataset_stats, save_array, write_manifest

HOP = 512
SR = 44100


def write_prepared(root: str | Path, *, lengths=(40, 56, 64, 72, 80, 96, 48, 60), valid_lengths=(50, 70),
                   n_mels: int = 128, unit_dim: int = 256, seed: int = 0, nan_pieces: int = 0,
                   singers: tuple[str, ...] = ()) -> Path:
    """Write `root` as a prepared-data folder (manifest, mel/, f0/, units/, pieces/) and return it.

    `lengths`: mel frames of the training pieces; `valid_lengths`: of the validation pieces.
    `nan_pieces`: the first that many training mels are NaN (to test bad-loss handling).
    `singers`: a multi-singer dataset: piece i belongs to singers[i % len(singers)] (its source is
    `<singer>/<id>.wav`) and each singer's mels carry their own timbre (a per-singer offset that
    tilts the spectrum), so a model that learns the singers renders them differently.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((unit_dim, n_mels)).astype(np.float32) / np.sqrt(unit_dim)
    pieces, mels, f0s = [], [], []
    splits = [("train", n) for n in lengths] + [("valid", n) for n in valid_lengths]
    for i, (split, frames) in enumerate(splits):
        piece_id = f"{split}{i:03d}"
        n_units = max(1, frames * HOP * 16000 // SR // 320)
        units = rng.standard_normal((n_units, unit_dim)).astype(np.float32)
        # A slowly gliding melody with an unvoiced gap, like a sung phrase.
        f0 = (220.0 * 2 ** (np.sin(np.linspace(0, 3, frames) + i) / 2)).astype(np.float32)
        f0[frames // 3: frames // 3 + 3] = 0.0
        frame_units = units[np.minimum(np.arange(frames) * n_units // frames, n_units - 1)]
        mel = -3.0 + np.tanh(frame_units @ projection) + 0.3 * np.log2(np.maximum(f0, 55.0) / 220.0)[:, None]
        singer = singers[i % len(singers)] if singers else None
        if singer is not None:
            k = singers.index(singer)
            mel = mel + (1.0 if k % 2 == 0 else -1.0) * np.linspace(-0.8, 0.8, n_mels)[None] * (1 + k // 2)
        mel = (mel + 0.05 * rng.standard_normal(mel.shape)).astype(np.float32)
        if split == "train" and i < nan_pieces:
            mel[:] = np.nan
        audio = (0.1 * rng.standard_normal(frames * HOP)).astype(np.float32)
        key = f"k{i:03d}"
        save_array(root / "mel" / f"{piece_id}.npy", mel)
        save_array(root / "f0" / f"{key}.npy", f0)
        save_array(root / "units" / f"{key}.npy", units)
        save_array(root / "pieces" / f"{piece_id}.npy", audio)
        source = f"{piece_id}.wav" if singer is None else f"{singer}/{piece_id}.wav"
        pieces.append(Piece(id=piece_id, source=source, start=0, end=frames * HOP, frames=frames,
                            split=split, f0_key=key, units_key=key, voiced_fraction=float((f0 > 0).mean())))
        if split == "train" and not np.isnan(mel).any():
            mels.append(mel)
            f0s.append(f0)
    manifest = Manifest(
        mel={"sample_rate": SR, "hop_size": HOP, "n_fft": 2048, "win_size": 2048, "n_mels": n_mels,
             "fmin": 40.0, "fmax": 16000.0},
        f0={"method": "synthetic"}, content={"encoder": "hubert-soft", "is_standin": True},
        pieces=pieces,
        stats=dataset_stats(mels, f0s) if mels else {"spec_min": [-5.0] * n_mels, "spec_max": [0.0] * n_mels},
        speakers=sorted(singers),
    )
    write_manifest(root, manifest)
    return root
