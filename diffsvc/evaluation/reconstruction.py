"""Reconstruction of a singer's own pieces: what `diffsvc eval` reports per checkpoint and what
training's validation can call cheaply.

    pieces = [data.load(p) for p in data.pieces("valid")]       # {mel, f0, units}
    result = reconstruction_figures(model, pieces, sampler="ddim", sampling_steps=4)
    result.figures   # {"recon_log_mel_l1": .., "recon_mcd_db": .., and pitch/speaker ones when asked}

Each piece is converted from its own content units and f0, sampled from pure noise with the given
sampler (start noise seeded per piece, so figures compare across checkpoints), and compared with
its real mel (frames aligned 1:1: the lengths are equal). A model trained with K_step below its
timesteps (the original's shallow diffusion) cannot start from noise; it starts from the real mel
noised to K_step, as infer does, and the figures then say how much it restores.
With a vocoder and an f0 extractor, the output is vocoded and its f0 re-tracked against the
piece's f0 (use an extractor other than the conditioning one: see pitch_track.retrack_method).
Figures are pooled over all frames of all pieces (long pieces weigh more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from diffsvc.data.dataset import make_item
from diffsvc.evaluation.pitch_track import track
from diffsvc.evaluation.metrics import cosine_similarity, log_mel_distance, mel_cepstral_distortion, pitch_scores
from diffsvc.sampling import make_sampler


@dataclass
class Reconstruction:
    figures: dict  # name -> float (nan where undefined)
    mels: list[np.ndarray] = field(default_factory=list)  # sampled log10 mels [T, M] per piece
    audio: list[np.ndarray] = field(default_factory=list)  # vocoded outputs (with a vocoder)


def piece_noise(n_mels: int, frames: int, seed: int, index: int) -> torch.Tensor:
    """[1, 1, M, T] start noise of piece `index`, the same for every checkpoint."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + index) % (2**63))
    return torch.randn(1, 1, n_mels, frames, generator=g)


@torch.inference_mode()
def reconstruction_figures(model, pieces: Sequence[dict], *, sampler: str = "ddim", sampling_steps: int = 4,
                           seed: int = 0, vocoder=None, f0_extractor=None, speaker_encoder=None,
                           speaker_centroid: np.ndarray | None = None, mel_range: tuple[float, float] | None = None,
                           sample_rate: int = 44100, max_frames: int | None = None) -> Reconstruction:
    """Sample each piece from its own conditioning and score it against its real mel.

    model: a GaussianDiffusion (put in eval mode by the caller; its device is used).
    pieces: dicts {"mel": log10 [T, M], "f0": Hz [T] (0 = unvoiced), "units": [Th, D]} (and for a
    multi-singer model "speaker": the piece's singer row), as
        PreparedData.load returns them.
    sampler / sampling_steps: any name of diffsvc.sampling (few steps keep validation cheap).
    vocoder + f0_extractor: also vocode, re-track f0 and add the pitch figures.
    speaker_encoder + speaker_centroid: also add the cosine of the outputs to the singer's centroid.
    mel_range: (mel_vmin, mel_vmax) the vocoder's input is clipped to, as infer does.
    max_frames: only the first max_frames frames of each piece (cheaper validation).
    Returns Reconstruction with figures recon_log_mel_l1 (log10 units), recon_mcd_db (dB) and, when
    asked, recon_median_abs_cents, recon_rpa, recon_voicing_recall, recon_voicing_false_alarm,
    recon_speaker_sim. Empty `pieces` give nan figures.
    """
    device = next(model.parameters()).device
    # whatever draws from the global generators here (vocoder phases) leaves the caller's state
    # (training's) as it was
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _reconstruct(model, pieces, device, sampler, sampling_steps, seed, vocoder, f0_extractor,
                            speaker_encoder, speaker_centroid, mel_range, sample_rate, max_frames)


def _reconstruct(model, pieces, device, sampler, sampling_steps, seed, vocoder, f0_extractor, speaker_encoder,
                 speaker_centroid, mel_range, sample_rate, max_frames) -> Reconstruction:
    steps = make_sampler(sampler, model.schedule(), sampling_steps)
    shallow = model.K_step if model.K_step < model.num_timesteps else None
    real, fake, f0_ref, f0_out, embeddings, audio_out = [], [], [], [], [], []
    for index, piece in enumerate(pieces):
        item = make_item(np.asarray(piece["mel"]), np.asarray(piece["f0"], dtype=np.float32),
                         np.asarray(piece["units"]))
        mel_t, f0_log2, units, mel2ph = item.mel, item.f0, item.units, item.mel2ph
        if max_frames and len(mel_t) > max_frames:  # the first max_frames frames and the units they read
            mel_t, f0_log2, mel2ph = mel_t[:max_frames], f0_log2[:max_frames], mel2ph[:max_frames]
            units = units[: int(mel2ph.max())]
        t = len(mel_t)
        if t == 0:
            continue
        f0_hz = np.asarray(piece["f0"], dtype=np.float32)[:t]
        singer = piece.get("speaker")  # a multi-singer model: the piece's own singer (its table row)
        out = model.sample(units[None].to(device), mel2ph[None].to(device), f0_log2[None].to(device), steps,
                           ref_mel=mel_t[None].to(device), shallow_step=shallow,
                           noise=piece_noise(model.n_mels, t, seed, index).to(device),
                           speaker=None if singer is None else torch.tensor([int(singer)], device=device))[0]
        out = out.float()
        real.append(mel_t.numpy())
        fake.append(out.cpu().numpy())
        if vocoder is not None and (f0_extractor is not None or speaker_encoder is not None):
            vmel = out.clamp(*mel_range) if mel_range else out
            torch.manual_seed((int(seed) * 1_000_003 + index) % (2**63))  # vocoders draw phases
            wav = vocoder.vocode(vmel, torch.pow(2.0, f0_log2).to(device)).float().cpu().numpy()
            wav = np.clip(wav, -1.0, 1.0)  # as a written file would be
            audio_out.append(wav)
            if f0_extractor is not None:
                f0_ref.append(f0_hz[:t])
                f0_out.append(track(f0_extractor, wav, t))
            if speaker_encoder is not None and speaker_centroid is not None:
                e = speaker_encoder.embed(wav, sample_rate)
                if e is not None:
                    embeddings.append(e)
    real_all = np.concatenate(real) if real else np.zeros((0, model.n_mels))
    fake_all = np.concatenate(fake) if fake else np.zeros((0, model.n_mels))
    figures = {"recon_log_mel_l1": log_mel_distance(real_all, fake_all),
               "recon_mcd_db": mel_cepstral_distortion(real_all, fake_all)}
    if f0_extractor is not None and vocoder is not None:
        scores = pitch_scores(np.concatenate(f0_ref) if f0_ref else [], np.concatenate(f0_out) if f0_out else [])
        figures.update(recon_median_abs_cents=scores.median_abs_cents, recon_rpa=scores.raw_pitch_accuracy,
                       recon_voicing_recall=scores.voicing_recall,
                       recon_voicing_false_alarm=scores.voicing_false_alarm)
    if speaker_encoder is not None and speaker_centroid is not None and vocoder is not None:
        sims = [cosine_similarity(e, speaker_centroid) for e in embeddings]
        figures["recon_speaker_sim"] = float(np.mean(sims)) if sims else float("nan")
    return Reconstruction(figures, fake, audio_out)


VALIDATION_SAMPLING_STEPS = 4  # ddim: cheap enough to run at every validation (benchmarks/eval.py)
VALIDATION_MAX_FRAMES = 256  # the first ~3 s of each validation piece ...
VALIDATION_MAX_PIECES = 8  # ... of at most this many pieces


class ValidationFigures:
    """Reconstruction and pitch figures for training's validation, as TensorBoard scalars.

        figures = ValidationFigures(config, device, vocoder=vocoder)   # once per run
        logger.scalars(figures(model, pieces), step)                  # {"eval/recon_mcd_db": ..}

    `pieces`: dicts {mel, f0, units} (PreparedData.load of the validation pieces); the first
    `max_pieces`, each cut to its first `max_frames` frames, are used. Samples with
    DDIM `sampling_steps` (few: cheap), the start noise fixed per piece (`seed`), so values compare
    across steps. With a vocoder, the output's f0 is re-tracked by an extractor other than
    config.f0_extractor and the pitch figures are added; an extractor that cannot be made (say,
    torchfcpe missing and CREPE failing) is reported once through `log` and pitch is left out."""

    def __init__(self, config, device, *, vocoder=None, sampler: str = "ddim",
                 sampling_steps: int = VALIDATION_SAMPLING_STEPS, seed: int = 0,
                 max_frames: int | None = VALIDATION_MAX_FRAMES, max_pieces: int = VALIDATION_MAX_PIECES,
                 log=print):
        self.config, self.device, self.vocoder = config, torch.device(device), vocoder
        self.sampler, self.sampling_steps, self.seed, self.max_frames = sampler, sampling_steps, seed, max_frames
        self.max_pieces = max_pieces
        self.log = log
        self._retracker = "unmade"

    def retracker(self):
        if self._retracker == "unmade":
            self._retracker = None
            try:
                from diffsvc.evaluation.pitch_track import retrack_extractor

                self._retracker, note = retrack_extractor(self.config, self.config.f0_extractor, str(self.device))
                if note:
                    self.log(f"validation pitch: {note}")
            except Exception as e:  # noqa: BLE001 - figures in the logs must never stop training
                self.log(f"validation pitch figures disabled: no second f0 extractor ({e})")
        return self._retracker

    def __call__(self, model, pieces: Sequence[dict]) -> dict:
        retracker = self.retracker() if self.vocoder is not None else None
        result = reconstruction_figures(
            model, list(pieces)[: self.max_pieces], sampler=self.sampler, sampling_steps=self.sampling_steps,
            seed=self.seed,
            vocoder=self.vocoder, f0_extractor=retracker,
            mel_range=(self.config.mel_vmin, self.config.mel_vmax), sample_rate=self.config.audio_sample_rate,
            max_frames=self.max_frames)
        return {f"eval/{k}": v for k, v in result.figures.items() if np.isfinite(v)}
