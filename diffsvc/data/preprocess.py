"""`diffsvc preprocess raw/`: a folder of recordings -> the prepared-data folder `raw/.diffsvc/`.

Three phases (the format is described in `diffsvc.data.prepared`):

1. Check (cheap): scan, probe every file (rate, channels, peak, clipped share), decode it as a
   stream of 30 s blocks resampled to 44.1 kHz mono, measure its level (silence is relative to it,
   as in infer: `audio.slicer.SongLevel`), slice at silences block by block (`stream_slice`), and
   write each piece's audio and mel. A summary follows: total duration, sample-rate mix,
   clipped/quiet/silent files, files that failed, duration after slicing and what was dropped and
   why. Per source a small record (`sources/<hash>.json`: size, BLAKE2b hash of the
   file's bytes, settings, pieces with their audio hashes) is written last; a rerun skips decoding
   a file only when its size and content hash and every setting still match the record (a file
   replaced by other audio of the same size, time stamp kept, is redone). Hashing reads every
   source once per run (BLAKE2b: 140 MB/s measured on a busy 2-core machine).
2. Work (slow): f0 and content units of every piece, each cached under a key that hashes the
   piece's audio and every setting that changes the result, so any rerun computes only what is
   missing (changing the f0 method redoes f0 and nothing else) and an interrupted run resumes.
3. Split and statistics: a few seeded validation pieces, spec_min/spec_max and f0 statistics over
   the training pieces, the manifest (written last), and id-keyed files of vanished pieces removed.

Why content units are cached rather than computed while training (measured by
`benchmarks/preprocess.py`, see benchmarks/results/preprocess.md): on 2 shared CPU cores HuBERT-soft
(95 M parameters) took 1.4 s for a 15 s piece (11x real time), 1.6x the cost of a whole training
step on that piece (0.7x-1.6x over runs on the busy machine), every epoch again; reading the
cached units took 0.3 ms. On a
GPU the encoder would also hold memory beside the model being trained. Units cost 51 kB per second
of audio on disk. Mels are cheap (an STFT) and are recomputed whenever a source is re-sliced, but
stored, so training does no signal processing at all.

Memory stays flat in file length: a file is read in blocks and sliced in windows of a few blocks;
f0 and units are computed per piece (at most `max_s` seconds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from diffsvc.audio.slicer import LevelMeter, SongLevel
from diffsvc.data.prepared import (Manifest, Piece, content_hash, dataset_stats, prepared_dir, save_array,
                                   settings_hash, write_manifest)
from diffsvc.data.report import DatasetCheck, SourceFacts, duration, format_check, format_table
from diffsvc.data.scan import relative_name, scan_audio
from diffsvc.data.singers import (audio_beside_singer_folders, choose_valid_per_singer, detect_singers,
                                  format_singer_check, singer_of, singer_rows, singer_stats)
from diffsvc.data.stream_slice import SliceSettings, StreamDrop, stream_slices
from diffsvc.errors import AudioError, DiffSvcError, WriteError
from diffsvc.fileio import atomic_write_text, check_writable

SAMPLE_RATE = 44100
RECORD_VERSION = 3  # 2: silence relative to the file's level (audio.slicer.SongLevel); 3: the source key is size + BLAKE2b of its bytes; bump when slicing/decoding changes in a way the settings do not show
HEADROOM = 10 ** (-1 / 20)  # files over full scale are scaled so their peak sits at -1 dBFS


@dataclass
class PreprocessOptions:
    f0_method: str | None = None  # None: config.f0_extractor
    content: str | None = None  # None: config.content_encoder
    slicing: SliceSettings = field(default_factory=SliceSettings)
    valid: int | None = None  # validation pieces; None: min(5, ~2 %), at least 1 of >= 2 pieces
    device: str = "cpu"
    workers: int = 1  # processes for the check phase (decode, slice, mel)
    seed: int = 1234
    block_seconds: float = 30.0  # decoding block
    window_seconds: float | None = None  # slicing window (default 4 * max_s + 30 s)


@dataclass
class PreprocessResult:
    root: Path
    manifest: Manifest | None
    check: DatasetCheck
    f0_computed: int = 0
    f0_cached: int = 0
    units_computed: int = 0
    units_cached: int = 0
    sources_decoded: int = 0
    sources_cached: int = 0
    seconds: float = 0.0

    @property
    def usable(self) -> bool:
        return self.manifest is not None and bool(self.manifest.pieces)


# ------------------------------------------------------------------------------------------------
# Names and keys


def source_hash(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:10]


def piece_id(source: str, index: int) -> str:
    """Stable across runs (relative path + index) and safe as a file name on every system: a short
    ASCII slug of the file name for people, the path hash for uniqueness (non-ASCII, spaces)."""
    stem = Path(source).stem
    slug = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")[:24]
    return f"{slug + '-' if slug else ''}{source_hash(source)}-{index:04d}"


def f0_key(audio_hash: str, frames: int, f0_settings: dict) -> str:
    return settings_hash({"audio": audio_hash, "frames": frames, "f0": f0_settings})


def units_key(audio_hash: str, content: dict) -> str:
    key = {"audio": audio_hash, "encoder": content["encoder"], "is_standin": content["is_standin"]}
    if content.get("revision"):  # an encoder whose features changed: units cached before are recomputed
        key["revision"] = content["revision"]
    return settings_hash(key)


def default_valid_count(n_pieces: int) -> int:
    if n_pieces < 2:
        return 0
    return max(1, min(5, round(0.02 * n_pieces)))


def choose_valid(ids: Iterable[str], count: int, seed: int) -> set[str]:
    """`count` ids picked with a seeded RNG from the sorted ids: the same set for the same pieces."""
    ids = sorted(ids)
    count = max(0, min(count, len(ids) - 1)) if len(ids) >= 2 else 0
    return set(random.Random(seed).sample(ids, count))


# ------------------------------------------------------------------------------------------------
# Phase 1: one source file -> piece audio + mel + record (runs in worker processes too)


@dataclass
class SourceJob:
    path: str
    source: str  # relative to the raw folder
    root: str  # the prepared folder
    settings: dict  # slicing, mel, decoding: everything that changes pieces or mels
    slicing: SliceSettings
    block_seconds: float
    window_seconds: float | None

    @property
    def record_path(self) -> Path:
        return Path(self.root) / "sources" / f"{source_hash(self.source)}.json"


def _mel_extractor(mel: dict):
    from diffsvc.audio.mel import MelSettings

    return MelSettings.from_dict(mel).extractor()


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """"blake2b:" + the hex BLAKE2b (32-byte digest) of the file's bytes: the source cache key."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return "blake2b:" + h.hexdigest()


def cached_record(job: SourceJob) -> dict | None:
    """The record of a previous run, if the file's size and content hash and every setting are
    unchanged and its files exist (the modification time is not trusted)."""
    try:
        record = json.loads(job.record_path.read_text(encoding="utf-8"))
        size = os.stat(job.path).st_size
        if (record.get("version") != RECORD_VERSION or record.get("source") != job.source
                or record.get("size") != size or record.get("settings") != settings_hash(job.settings)
                or record.get("content") != file_hash(job.path)):
            return None
    except (OSError, ValueError):
        return None
    root = Path(job.root)
    for p in record["pieces"]:
        if not (root / "pieces" / f"{p['id']}.npy").exists() or not (root / "mel" / f"{p['id']}.npy").exists():
            return None
    return record


def prepare_source(job: SourceJob) -> dict:
    """Decode, slice and write one file's pieces and mels; return (and store) its record.
    Raises AudioError for files that cannot be read."""
    from diffsvc.audio.load import iter_audio_blocks, load_audio, probe_audio

    size, content = os.stat(job.path).st_size, file_hash(job.path)  # before decoding: a later change redoes it
    info = probe_audio(job.path)
    gain = HEADROOM / info.peak if info.peak > 1.0 else 1.0

    def blocks() -> Iterable[np.ndarray]:
        if info.format == "unknown":  # soundfile cannot stream it; the fallback decoder reads it whole
            decoded: Iterable[np.ndarray] = [load_audio(job.path, SAMPLE_RATE)]
        else:
            decoded = iter_audio_blocks(job.path, job.block_seconds, SAMPLE_RATE)
        return decoded if gain == 1.0 else (b * np.float32(gain) for b in decoded)

    # silence as infer defines it: relative to the file's own level (one pass to measure it)
    meter = LevelMeter(SAMPLE_RATE)
    for block in blocks():
        meter.add(block)
    level = meter.level(job.slicing.db)
    slicing = dataclasses.replace(job.slicing, db=level.threshold_db)  # the slicer takes dBFS
    mel = _mel_extractor(job.settings["mel"])
    root = Path(job.root)
    pieces, dropped = [], []
    for item in stream_slices(blocks(), SAMPLE_RATE, slicing, window_s=job.window_seconds):
        if isinstance(item, StreamDrop):
            dropped.append({"start": item.start, "end": item.end, "reason": item.reason,
                            "seconds": (item.end - item.start) / SAMPLE_RATE})
            continue
        pid = piece_id(job.source, len(pieces))
        spectrogram = mel.numpy(item.audio)
        save_array(root / "pieces" / f"{pid}.npy", item.audio)
        save_array(root / "mel" / f"{pid}.npy", spectrogram)
        pieces.append({"id": pid, "start": item.start, "end": item.end, "frames": int(len(spectrogram)),
                       "audio_hash": content_hash(item.audio)})
    record = {
        "version": RECORD_VERSION, "source": job.source, "size": size, "content": content,
        "settings": settings_hash(job.settings), "duration": info.duration, "sample_rate": info.sample_rate,
        "channels": info.channels, "peak": info.peak, "clipped": info.clipped_fraction, "gain": gain,
        "pieces": pieces, "dropped": dropped, "level": dataclasses.asdict(level),
    }
    atomic_write_text(job.record_path, json.dumps(record, indent=1, ensure_ascii=False))
    return record


def _run_job(job: SourceJob) -> tuple[dict | None, str | None]:
    try:
        return prepare_source(job), None
    except AudioError as e:
        return None, str(e)
    except WriteError:  # the prepared folder (a full disk): stops the run with one line
        raise
    except OSError as e:  # reading the source
        return None, f"{job.path}: cannot be read ({e.strerror or e})"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # the processes share the cores


def _facts(record: dict) -> SourceFacts:
    return SourceFacts(record["source"], record["duration"], record["sample_rate"], record["channels"],
                       record["peak"], record["clipped"], record["gain"],
                       sum(p["end"] - p["start"] for p in record["pieces"]) / SAMPLE_RATE,
                       len(record["pieces"]), [{"reason": d["reason"], "seconds": d["seconds"]} for d in record["dropped"]],
                       SongLevel(**record["level"]))


# ------------------------------------------------------------------------------------------------
# The pipeline


def mel_settings(config) -> dict:
    """The config's mel settings as a prepared dataset records them (MelSettings.to_dict)."""
    from diffsvc.audio.mel import MelSettings

    return MelSettings.from_config(config).to_dict()


def make_content_encoder(choice: str, config, device: str):
    """The encoder `choice` names; never a silent stand-in (missing weights raise CheckpointError
    with the file to put where, plus the offline alternative)."""
    from diffsvc.errors import CheckpointError
    from diffsvc.features.content import load_content_encoder

    try:
        return load_content_encoder(config.replace(content_encoder=choice, use_vec=False), device=device)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; or pass --content stand-in for an offline try "
                              "(weight-free, not for real voice conversion)") from None


def check_content_weights(choice: str, config) -> None:
    """Fail before any work when the encoder's weights file is missing (loading waits until needed)."""
    from diffsvc.features.content import CONTENT_ENCODERS, find_weights

    if CONTENT_ENCODERS.get(choice).weights_key is None:
        return
    if find_weights(choice, config) is None:
        make_content_encoder(choice, config, "cpu")  # raises the factory's one-line error


def preprocess(raw_dir: str | os.PathLike, config, options: PreprocessOptions | None = None, *,
               f0_extractor=None, content_encoder=None, log: Callable[[str], None] = print,
               progress: bool | None = None, confirm: Callable[[DatasetCheck], bool] | None = None) -> PreprocessResult:
    """Prepare `raw_dir` for training; see the module docstring.

    f0_extractor / content_encoder: ready-made objects to use instead of building them from the
    config (tests count calls through them). progress: tqdm bars (None: only on a terminal).
    confirm: asked after the check when it found problems; returning False stops before the work.
    """
    from tqdm import tqdm

    from diffsvc.features.f0 import make_f0_extractor

    started = time.perf_counter()
    options = options or PreprocessOptions()
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise DiffSvcError(f"{raw}: no such folder; pass the folder that holds your recordings")
    # the most basic problem first: a folder without audio is said before any setting or model file is
    # checked (a missing HuBERT named first sent users after weights they did not need yet), and before
    # raw/.diffsvc is made (an empty folder is left as it was)
    scan = scan_audio(raw)
    if not scan.audio:
        skipped = f"; {len(scan.skipped)} other file(s) skipped" if scan.skipped else ""
        raise DiffSvcError(f"{raw}: no audio files found (looked for .wav, .flac, .ogg, .mp3 and more, in all "
                           f"sub-folders{skipped}); put the singer's recordings in it, or pass the folder that "
                           "holds them")
    if config.audio_sample_rate != SAMPLE_RATE:
        raise DiffSvcError(f"audio_sample_rate {config.audio_sample_rate}: preprocess prepares 44100 Hz data "
                           "(the NSF-HiFiGAN setup); use a 44.1 kHz config")
    root = prepared_dir(raw)
    check_writable(root)  # a read-only folder or a full disk: one line before any work
    method = options.f0_method or config.f0_extractor
    choice = options.content or ("contentvec" if config.use_vec else config.content_encoder)
    from diffsvc.features.content import CONTENT_ENCODERS

    choice = CONTENT_ENCODERS.canonical(choice)  # DiffSvcError listing the choices if unknown
    if f0_extractor is None:
        f0_extractor = make_f0_extractor(method, config.audio_sample_rate, config.hop_size, config.f0_min,
                                         config.f0_max, options.device, config.crepe_threshold)
    made_by = CONTENT_ENCODERS.get(choice) if content_encoder is None else content_encoder
    content = {"encoder": choice, "is_standin": bool(getattr(made_by, "is_standin", False))}
    if getattr(made_by, "revision", None):
        content["revision"] = made_by.revision
    if content_encoder is None:
        check_content_weights(choice, config)

    # Phase 1: the check (decode, slice, mel)
    mel = mel_settings(config)
    settings = {"slicing": asdict(options.slicing), "mel": mel, "block_seconds": options.block_seconds,
                "window_seconds": options.window_seconds, "sample_rate": SAMPLE_RATE}
    jobs = [SourceJob(str(p), relative_name(p, raw), str(root), settings, options.slicing, options.block_seconds,
                      options.window_seconds) for p in scan.audio]
    records: dict[str, dict] = {}
    failed: list[dict] = []
    result = PreprocessResult(root, None, DatasetCheck(skipped=[relative_name(p, raw) for p in scan.skipped]))
    todo = []
    for job in jobs:
        record = cached_record(job)
        if record is None:
            todo.append(job)
        else:
            records[job.source] = record
    result.sources_cached = len(records)
    if todo:
        bar = tqdm(total=len(todo), desc="decode and slice", unit="file", disable=_disabled(progress))
        if options.workers > 1 and len(todo) > 1:
            import multiprocessing

            # spawn: torch and forked threads do not mix; each worker uses one thread
            with ProcessPoolExecutor(options.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                for job, (record, error) in zip(todo, pool.map(_run_job, todo)):
                    _collect(job, record, error, records, failed)
                    bar.update()
        else:
            for job in todo:
                _collect(job, *_run_job(job), records, failed)
                bar.update()
        bar.close()
    result.sources_decoded = len(records) - result.sources_cached
    ordered = [records[j.source] for j in jobs if j.source in records]
    result.check.files = [_facts(r) for r in ordered]
    result.check.failed = failed
    singers = detect_singers(j.source for j in jobs)  # raw/<singer>/...: several singers
    result.check.beside_singers = audio_beside_singer_folders(j.source for j in jobs)
    for line in format_check(result.check) + format_singer_check(singers, result.check.files,
                                                                 beside=result.check.beside_singers):
        log(line)
    pieces = [(r["source"], p) for r in ordered for p in r["pieces"]]
    if not pieces:
        result.seconds = time.perf_counter() - started
        return result
    if confirm is not None and result.check.has_warnings() and not confirm(result.check):
        raise DiffSvcError("stopped after the dataset check; nothing was computed")

    # Phase 2: the work (f0, content units)
    f0_settings = dict(f0_extractor.settings())  # "extractor" names the method
    encoder = content_encoder
    kept: list[Piece] = []
    unvoiced: list[dict] = []
    bar = tqdm(total=sum(p["end"] - p["start"] for _, p in pieces) / SAMPLE_RATE, desc="f0 and units",
               unit="s", disable=_disabled(progress), bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")
    for source, p in pieces:
        fkey = f0_key(p["audio_hash"], p["frames"], f0_settings)
        ukey = units_key(p["audio_hash"], content)
        f0_path = root / "f0" / f"{fkey}.npy"
        units_path = root / "units" / f"{ukey}.npy"
        audio = None
        if f0_path.exists():
            f0 = np.load(f0_path)
            result.f0_cached += 1
        else:
            audio = np.load(root / "pieces" / f"{p['id']}.npy")
            f0 = f0_extractor.extract(audio, p["frames"]).astype(np.float32)
            save_array(f0_path, f0)
            result.f0_computed += 1
        voiced = float(np.mean(f0 > 0)) if len(f0) else 0.0
        if voiced == 0.0:  # the original skipped such items too: nothing to learn pitch from
            unvoiced.append({"source": source, "reason": "no voiced frames (f0 found no pitch)",
                             "seconds": (p["end"] - p["start"]) / SAMPLE_RATE})
        else:
            if units_path.exists():
                result.units_cached += 1
            else:
                if encoder is None:
                    encoder = make_content_encoder(choice, config, options.device)
                audio = np.load(root / "pieces" / f"{p['id']}.npy") if audio is None else audio
                units = encoder.encode(audio, SAMPLE_RATE, source=f"{source} [{p['start'] / SAMPLE_RATE:.1f} s]")
                save_array(units_path, units.numpy().astype(np.float32))
                result.units_computed += 1
            kept.append(Piece(id=p["id"], source=source, start=p["start"], end=p["end"], frames=p["frames"],
                              split="train", f0_key=fkey, units_key=ukey, voiced_fraction=voiced))
        bar.update((p["end"] - p["start"]) / SAMPLE_RATE)
    bar.close()

    # Phase 3: split, statistics, manifest
    dropped = [{"source": r["source"], "reason": d["reason"], "seconds": d["seconds"]}
               for r in ordered for d in r["dropped"]] + unvoiced
    if not kept:
        result.seconds = time.perf_counter() - started
        return result
    if singers:  # validation pieces from every singer (--valid counts per singer)
        valid = choose_valid_per_singer([(p.id, singer_of(p.source, singers)) for p in kept], options.valid,
                                        options.seed, default_valid_count)
    else:
        count = options.valid if options.valid is not None else default_valid_count(len(kept))
        valid = choose_valid((p.id for p in kept), count, options.seed)
    for p in kept:
        p.split = "valid" if p.id in valid else "train"
    train = [p for p in kept if p.split == "train"]
    summaries, f0s = [], []
    for p in train:
        m = np.load(root / "mel" / f"{p.id}.npy", mmap_mode="r")
        summaries.append(np.stack([m.min(axis=0), m.max(axis=0)]))  # same per-bin min/max, 2 rows in memory
        f0s.append(np.load(root / "f0" / f"{p.f0_key}.npy"))
    stats = dataset_stats(summaries, f0s)
    if singers:  # per-singer f0 statistics (infer --key auto) and amounts
        per_f0: dict[str, list] = {s: [] for s in singers}
        for p, f in zip(train, f0s):
            per_f0[singer_of(p.source, singers)].append(f)
        stats["speakers"] = singer_stats(
            per_f0, {s: sum(p.seconds for p in kept if singer_of(p.source, singers) == s) for s in singers},
            {s: sum(1 for p in kept if singer_of(p.source, singers) == s) for s in singers})
    manifest = Manifest(mel=mel, f0=f0_settings, content=content, pieces=kept, stats=stats,
                        dropped=dropped, failed=failed, speakers=singers)
    write_manifest(root, manifest)
    remove_stale_files(root, manifest, {j.record_path.name for j in jobs})
    result.manifest = manifest
    result.seconds = time.perf_counter() - started
    return result


def _collect(job: SourceJob, record: dict | None, error: str | None, records: dict, failed: list) -> None:
    if record is None:
        failed.append({"source": job.source, "error": error})
    else:
        records[job.source] = record


def _disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: None = only on a terminal


def remove_stale_files(root: Path, manifest: Manifest, records: set[str]) -> int:
    """Remove the id-keyed files (pieces/, mel/) of pieces that no longer exist, the records of
    vanished sources and temporary files left by killed runs. The content-keyed caches (f0/,
    units/) stay: they are never wrong, and switching a setting back then costs nothing."""
    ids = {p.id for p in manifest.pieces}
    removed = 0
    for folder in ("pieces", "mel"):
        for path in (root / folder).glob("*.npy"):
            if path.stem not in ids:
                path.unlink(missing_ok=True)
                removed += 1
    for path in (root / "sources").glob("*.json"):
        if path.name not in records:
            path.unlink(missing_ok=True)
            removed += 1
    for folder in ("pieces", "mel", "f0", "units", "sources", "."):
        for path in (root / folder).glob(".*.part*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def summary_table(result: PreprocessResult) -> list[str]:
    """The table printed at the end."""
    check = result.check
    rows = [
        ("audio files", f"{len(check.files)} read, {len(check.failed)} failed, {len(check.skipped)} not audio"),
        ("audio", duration(check.total_seconds)),
        ("after slicing", f"{duration(check.sliced_seconds)} in {check.pieces} pieces"),
    ]
    if result.manifest is not None:
        train = [p for p in result.manifest.pieces if p.split == "train"]
        valid = [p for p in result.manifest.pieces if p.split == "valid"]
        rows += [
            ("training pieces", f"{len(train)} ({duration(sum(p.seconds for p in train))})"),
            ("validation pieces", f"{len(valid)} ({duration(sum(p.seconds for p in valid))})"),
            ("dropped", f"{len(result.manifest.dropped)} stretch(es), "
                        f"{sum(d.get('seconds', 0.0) for d in result.manifest.dropped):.1f} s"),
        ]
        stats = result.manifest.stats
        if "f0_median_hz" in stats:
            rows.append(("f0 median (5-95 %)", f"{stats['f0_median_hz']:.0f} Hz "
                                               f"({stats['f0_p05_hz']:.0f}-{stats['f0_p95_hz']:.0f} Hz)"))
        if result.check.beside_singers:
            rows.append(("singers", f"ONE (WARNING: {len(result.check.beside_singers)} audio file(s) directly in the "
                                    "raw folder beside singer folders; see the dataset check)"))
        if result.manifest.speakers:
            splits = {s: (sum(1 for p in train if result.manifest.speaker_of(p) == s),
                          sum(1 for p in valid if result.manifest.speaker_of(p) == s))
                      for s in result.manifest.speakers}
            rows += singer_rows(stats.get("speakers", {}), splits)
        rows.append(("f0", f"{result.manifest.f0.get('extractor')}: {result.f0_computed} computed, "
                           f"{result.f0_cached} cached"))
        rows.append(("content units", f"{result.manifest.content['encoder']}: {result.units_computed} computed, "
                                      f"{result.units_cached} cached"))
    rows += [("sources", f"{result.sources_decoded} decoded, {result.sources_cached} unchanged"),
             ("time", f"{result.seconds:.1f} s"),
             ("written to", str(result.root))]
    return format_table(rows)


def nothing_usable_reason(result: PreprocessResult) -> str:
    """One line saying why no training data came out."""
    check = result.check
    parts = []
    if check.failed:
        parts.append(f"{len(check.failed)} file(s) could not be read")
    if check.files and not check.pieces:
        parts.append(f"the {len(check.files)} readable file(s) gave no piece of at least "
                     "the minimum length above the silence threshold (try a lower --db or --min-piece)")
    elif check.pieces:
        parts.append("no piece has any voiced frame (f0 found no pitch)")
    return "no usable training data: " + "; ".join(parts or ["nothing to work with"])


__all__ = ["PreprocessOptions", "PreprocessResult", "SliceSettings", "preprocess", "summary_table",
           "nothing_usable_reason", "piece_id", "f0_key", "units_key", "choose_valid", "default_valid_count",
           "remove_stale_files"]
