"""Evaluate one or several checkpoints of a project: one row of figures per checkpoint.

    result = evaluate(EvalRequest(choices, songs={path: wav}, data=prepared), device)

Per checkpoint:
- reconstruction of the singer's validation pieces (reconstruction.reconstruction_figures, with
  the project's sampler and sampling steps, from pure noise);
- for each song, the conversion infer makes (the same SongConverter calls), scored for pitch
  (output f0 re-tracked by another extractor against the input f0 after the key shift), speaker
  similarity (to the singer's training-audio centroid and to the source), content preservation
  (the project's own content encoder on output and input) and speed (real-time factor per stage,
  peak memory).
Figures that need a missing optional part are left out and named in `unavailable`.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffsvc.evaluation.metrics import (content_distance, cosine_similarity, pitch_scores, real_time_factor)
from diffsvc.evaluation.pitch_track import retrack_extractor, track
from diffsvc.evaluation.reconstruction import reconstruction_figures
from diffsvc.evaluation.speaker import INSTALL_HINT, load_speaker_encoder

CENTROID_PIECES = 16  # training pieces embedded for the singer's centroid


@dataclass
class EvalRequest:
    choices: list  # CheckpointChoice, in step order
    songs: dict = field(default_factory=dict)  # Path -> float32 mono wav at the project's rate
    data: object | None = None  # PreparedData of the singer (validation pieces, training audio)
    data_note: str = ""  # why there is no data, when there is none
    key: float = 0.0
    seed: int = 0
    sampler: str | None = None  # None: the project's
    sampling_steps: int | None = None
    max_pieces: int = 8
    speaker: str | None = None  # multi-singer models: --speaker (a singer or a blend) for the songs
    allow_unsafe: bool = False
    log: callable = print


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident memory so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluation_pieces(data, max_pieces: int) -> list:
    """The validation pieces (all pieces when the folder has none), at most max_pieces."""
    pieces = data.pieces("valid") or data.pieces()
    return pieces[:max_pieces]


def evaluate(request: EvalRequest, device: torch.device) -> dict:
    """Rows of figures, one per checkpoint, plus settings and what could not be computed."""
    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.cpu_runtime import denoiser_runtime, resolve_cpu_runtime
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import load_checkpoint

    log = request.log
    unavailable: list[str] = []
    loaded = load_checkpoint(request.choices[0], device, allow_unsafe=request.allow_unsafe)
    config = loaded.config
    sampler = request.sampler or config.sampler
    steps = request.sampling_steps or config.sampling_steps
    vocoder = load_vocoder_for(config, device)
    encoder = load_content_encoder_for(config, device)
    retracker, note = retrack_extractor(config, config.f0_extractor, str(device))
    if note:
        log(f"note: {note}")
    from diffsvc.model.speakers import parse_speaker, row_of, singer_name

    # songs need a singer (one line listing them when missing); reconstruction uses each piece's own
    singer = (parse_speaker(request.speaker, config.speakers)
              if request.speaker is not None or (config.speakers and request.songs) else None)
    speaker = load_speaker_encoder(str(device))
    if speaker is None:
        unavailable.append(f"speaker similarity ({INSTALL_HINT})")

    pieces, centroid = [], None
    if request.data is not None:
        from diffsvc.training.project import check_data_matches

        check_data_matches(config, request.data, str(request.choices[0].path.parent / "config.yaml"))
        manifest = request.data.manifest
        pieces = [dict(request.data.load(p), speaker=row_of(manifest.speaker_of(p), config.speakers)
                       if config.speakers else None)
                  for p in evaluation_pieces(request.data, request.max_pieces)]
        if speaker is not None:
            # the singer the songs are converted to (a blend: its singers' audio together)
            sung = {singer_name(n) for n, _ in singer.parts} if singer is not None else None
            mine = [p for p in request.data.pieces() if sung is None or singer_name(manifest.speaker_of(p)) in sung]
            train = ([p for p in mine if p.split == "train"] or mine)[:CENTROID_PIECES]
            centroid = speaker.centroid([request.data.load_audio(p) for p in train], config.audio_sample_rate)
            if centroid is None:
                unavailable.append("speaker similarity to the singer (no voiced training audio)")
    else:
        unavailable.append(f"reconstruction ({request.data_note or 'no prepared data'})")
    if not request.songs:
        unavailable.append("song figures: pitch, speaker, content, speed (no SONG given)")

    sources = {}
    for path, wav in request.songs.items():  # per song, once: the source's embedding and units
        sources[path] = {"embedding": speaker.embed(wav, config.audio_sample_rate) if speaker else None,
                         "units": encoder.encode(wav, config.audio_sample_rate).numpy() if len(wav) else None}

    rows, songs_detail = [], []
    ran_denoiser = None  # who ran the denoiser in the songs' conversions (a converter may fall back)
    for n, choice in enumerate(request.choices):
        if n:
            loaded = load_checkpoint(choice, device, allow_unsafe=request.allow_unsafe)
        loaded.model.eval()
        step = loaded.global_step if choice.step < 0 else choice.step
        log(f"evaluating {choice.path.name} (step {step})")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        row: dict = {"step": int(step), "checkpoint": choice.path.name}
        if pieces:
            recon = reconstruction_figures(
                loaded.model, pieces, sampler=sampler, sampling_steps=steps, seed=request.seed, vocoder=vocoder,
                f0_extractor=retracker, speaker_encoder=speaker, speaker_centroid=centroid,
                mel_range=(config.mel_vmin, config.mel_vmax), sample_rate=config.audio_sample_rate)
            row.update(recon.figures)
            row["recon_pieces"] = len(pieces)
        if request.songs:
            settings = InferenceSettings(sampler=sampler, sampling_steps=steps, f0_method=config.f0_extractor,
                                         shallow_step=loaded.model.K_step
                                         if loaded.model.K_step < loaded.model.num_timesteps else None,
                                         speaker=None if singer is None else singer.tensor()[0])
            converter = SongConverter(loaded, encoder, vocoder, device, settings)
            per_song = [_score_song(converter, path, wav, sources[path], request, retracker, speaker, centroid,
                                    encoder) for path, wav in request.songs.items()]
            ran_denoiser = converter.denoiser_runtime
            songs_detail += [{"step": int(step), **s} for s in per_song]
            row.update(_pooled(per_song))
            total_audio = sum(len(w) for w in request.songs.values()) / config.audio_sample_rate
            for stage, seconds in converter.timer.seconds.items():
                row[f"rtf_{stage}"] = real_time_factor(seconds, total_audio)
            row["rtf_total"] = real_time_factor(sum(converter.timer.seconds.values()), total_audio)
        row["peak_memory_mib"] = peak_memory_mib(device)
        rows.append(row)
    return {
        "project": request.choices[0].project,
        "speaker": None if singer is None else singer.text,
        "settings": {"sampler": sampler, "sampling_steps": steps, "seed": request.seed, "key": request.key,
                     "f0_conditioning": config.f0_extractor, "f0_retracked_with": retracker.name,
                     "speaker_encoder": "resemblyzer GE2E" if speaker else None,
                     "content_encoder": config.content_encoder, "vocoder": config.vocoder, "device": str(device),
                     "cpu_runtime": resolve_cpu_runtime(config.cpu_runtime, device),  # what `auto` chose here
                     # the sampler's model in the songs' conversions, as it ran (an export that failed runs torch)
                     "denoiser_runtime": ran_denoiser or denoiser_runtime(config.cpu_runtime, device),
                     "peak_memory": "CUDA peak allocated per checkpoint" if device.type == "cuda"
                     else "process peak resident memory so far (CPU)"},
        "rows": rows, "songs": songs_detail, "unavailable": unavailable,
        "best_step": best_step(rows),
    }


def _score_song(converter, path: Path, wav: np.ndarray, source: dict, request: EvalRequest, retracker, speaker,
                centroid, encoder) -> dict:
    """Convert one song as infer does and score it."""
    sr = converter.sample_rate
    analysis = converter.analyse(wav)
    result = converter.convert(wav, analysis, key=float(request.key), seed=request.seed)
    out = np.clip(result.audio, -1.0, 1.0)  # as infer's written file would be
    # the f0 the model was conditioned with (after the key shift, and any octave folding infer
    # applied to shifts past the model's range), on the frames the input has voiced
    intended = np.where(result.f0_hz > 0, result.f0_cond_hz, 0.0)
    scores = pitch_scores(intended, track(retracker, out, len(intended)))
    figures = {"song": str(path), "median_abs_cents": scores.median_abs_cents, "rpa": scores.raw_pitch_accuracy,
               "voicing_recall": scores.voicing_recall, "voicing_false_alarm": scores.voicing_false_alarm,
               "seconds": len(wav) / sr}
    if speaker is not None:
        e = speaker.embed(out, sr)
        nan = float("nan")
        figures["speaker_sim_target"] = cosine_similarity(e, centroid) if e is not None and centroid is not None else nan
        figures["speaker_sim_source"] = (cosine_similarity(e, source["embedding"])
                                         if e is not None and source["embedding"] is not None else nan)
        figures["speaker_moved"] = figures["speaker_sim_target"] - figures["speaker_sim_source"]
    if source["units"] is not None:
        figures["content_distance"] = content_distance(encoder.encode(out, sr).numpy(), source["units"])
    return figures


SONG_FIGURES = ("median_abs_cents", "rpa", "voicing_recall", "voicing_false_alarm", "speaker_sim_target",
                "speaker_sim_source", "speaker_moved", "content_distance")


def _pooled(per_song: list[dict]) -> dict:
    """Song figures averaged over songs, weighted by length (nan entries left out)."""
    out = {}
    for name in SONG_FIGURES:
        pairs = [(s[name], s["seconds"]) for s in per_song if name in s and np.isfinite(s[name])]
        if any(name in s for s in per_song):
            out[name] = float(np.average([v for v, _ in pairs], weights=[w for _, w in pairs])) if pairs \
                else float("nan")
    return out


def best_step(rows: list[dict]) -> int | None:
    """The step with the lowest reconstruction MCD (None without reconstruction figures)."""
    scored = [(r["recon_mcd_db"], r["step"]) for r in rows if np.isfinite(r.get("recon_mcd_db", float("nan")))]
    return min(scored)[1] if scored else None
