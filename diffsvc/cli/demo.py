"""`diffsvc demo`: the whole pipeline, offline, on this machine, in a few minutes.

1. Generate a small corpus: songs of singers A and B in raw/singer_a/ and raw/singer_b/ (a
   multi-singer dataset), and a phrase of singer C, whom the model never hears.
2. `diffsvc preprocess` the raw folder (one singer per sub-folder).
3. `diffsvc train` one small model of the real architecture on both singers (configs/demo.yaml,
   shipped in the package).
4. `diffsvc infer --speaker` singer C's phrase as singer A and as singer B (full diffusion from
   noise, DPM-Solver++).
5. Check each result: same length as the input, its melody follows the input's (f0 error in
   cents, measured on the output audio), and how close it lies to its own singer and to the other
   (the shape of the average spectrum, and `diffsvc eval`'s speaker similarity when the eval
   extra is installed).

Without the pretrained HuBERT-soft and NSF-HiFiGAN weights the demo uses stand-ins that need no
download (MFCC-based content features, Griffin-Lim mel inversion); every line says so. Real
conversion needs the public weights in models/ (`diffsvc models` checks them); when they are
present, the demo uses them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from diffsvc.config import DEFAULT_CONFIG, DEMO_CONFIG, load_config
from diffsvc.errors import DiffSvcError

KEY = 0  # the two singers share a range


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=Path("demo"), help="where the demo writes everything (demo/)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (2000)")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of singing to generate, shared by the two "
                                                                   "singers (2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--fresh", action="store_true", help="delete the previous demo run first")


def _stand_ins() -> tuple[str, str, list[str]]:
    """(content_encoder, vocoder, notes): real weights when present, else the stand-ins."""
    base = load_config(DEFAULT_CONFIG)
    notes = []
    hubert = Path(base.hubert_path)
    if hubert.exists() or (hubert.parent / "hubert-soft-0d54a1f4.pt").exists():
        content = "hubert-soft"
    else:
        content = "stand-in"
        notes.append(f"content units: STAND-IN (MFCC features, not HuBERT-soft): put {base.hubert_path} for real conversion")
    if (Path(base.vocoder_ckpt)).exists() and (Path(base.vocoder_ckpt).parent / "config.json").exists():
        vocoder = "nsf-hifigan"
    else:
        vocoder = "griffin-lim"
        notes.append(f"vocoder: STAND-IN (Griffin-Lim, not NSF-HiFiGAN): put {Path(base.vocoder_ckpt).parent}/ for real audio")
    return content, vocoder, notes


def _stage(report: list, name: str, fn):
    print(f"\n=== demo: {name} ===", flush=True)
    start = time.perf_counter()
    code = fn()
    seconds = time.perf_counter() - start
    report.append((name, seconds))
    if code:
        raise DiffSvcError(f"demo stage '{name}' failed (exit {code}); see the lines above")
    return seconds


def measure_melody(input_wav: Path, output_wav: Path, key: float) -> dict:
    """f0 of input and output (parselmouth, 44.1 kHz mel grid); cents error of output against
    input shifted by `key` semitones, over frames voiced in both."""
    from diffsvc.audio.load import load_audio
    from diffsvc.features.f0 import extract_f0

    src = load_audio(input_wav)
    out = load_audio(output_wav)
    f_in = extract_f0(src, 44100, 512, None, "parselmouth", 40.0, 1100.0)
    f_out = extract_f0(out, 44100, 512, None, "parselmouth", 40.0, 1100.0)
    n = min(len(f_in), len(f_out))
    f_in, f_out = f_in[:n], f_out[:n]
    both = (f_in > 0) & (f_out > 0)
    cents = 1200 * np.log2(f_out[both] / (f_in[both] * 2 ** (key / 12))) if both.any() else np.zeros(0)
    return {
        "input_samples": len(src), "output_samples": len(out),
        "voiced_frames_input": int((f_in > 0).sum()), "voiced_frames_both": int(both.sum()),
        "median_abs_cents": float(np.median(np.abs(cents))) if cents.size else float("nan"),
        "p90_abs_cents": float(np.percentile(np.abs(cents), 90)) if cents.size else float("nan"),
    }


def measure_roughness(input_wav: Path, output_wav: Path) -> dict:
    """Frame-to-frame roughness (mean absolute difference of neighbouring frames of the log mel,
    over bins and frames) of the output's mel and the input's, both analysed from the audio the
    same way; a ratio near 1 means no broadband stripes (benchmarks/recipe.py measures the same)."""
    from diffsvc.audio.load import load_audio
    from diffsvc.audio.mel import MelExtractor

    extract = MelExtractor()
    rough = {}
    for name, path in (("input", input_wav), ("output", output_wav)):
        mel = np.asarray(extract.numpy(load_audio(path)), dtype=np.float64)  # [frames, bins], log10
        rough[name] = float(np.abs(np.diff(mel, axis=0)).mean())
    return {"input": rough["input"], "output": rough["output"], "ratio": rough["output"] / rough["input"]}


def spectrum_shape(paths: list[Path]) -> np.ndarray:
    """[128] the shape of the average log mel spectrum (dB) of the files' frames louder than 40 dB
    below the loudest, its mean level removed (loudness is not timbre)."""
    from diffsvc.audio.load import load_audio
    from diffsvc.audio.mel import MelExtractor
    from diffsvc.config import Config

    mel = MelExtractor.from_config(Config())
    frames = np.concatenate([mel.numpy(load_audio(p)) for p in paths])
    loud = frames.max(axis=1) > frames.max() - 2.0  # log10 units: 40 dB
    spectrum = 20 * frames[loud].mean(axis=0)
    return spectrum - spectrum.mean()


def measure_timbre(outputs: dict[str, Path], references: dict[str, list[Path]]) -> dict[str, dict]:
    """A blunt timbre check for when `diffsvc eval`'s speaker similarity is not available, per
    conversion {singer: {...}}:
    - "distance_db" {singer: RMS difference (dB) between the spectrum shape of the output and that
      singer's training songs};
    - "position" {other: where the output's shape lies on the line from `other`'s shape (0) to its
      own singer's (1), by projection}; "toward_own_singer": on every such line it lies further
      towards its own singer than the conversion to `other` does. The distances also count what
      the model does to every voice alike (a darker or noisier output moves away from both
      singers); the position compares the two conversions of one phrase along the one direction
      in which the singers differ."""
    shapes = {name: spectrum_shape(paths) for name, paths in references.items()}
    outs = {name: spectrum_shape([path]) for name, path in outputs.items()}

    def position(shape, start, end):
        axis = shapes[end] - shapes[start]
        return float((shape - shapes[start]) @ axis / (axis @ axis))

    result = {}
    for name, out in outs.items():
        others = [o for o in outs if o != name]
        pos = {o: position(out, o, name) for o in others}
        result[name] = {
            "distance_db": {ref: float(np.sqrt(np.mean((out - shape) ** 2))) for ref, shape in shapes.items()},
            "position": pos,
            "toward_own_singer": all(pos[o] > position(outs[o], o, name) for o in others),
        }
    return result


def measure_speaker(output_wav: Path, references: dict[str, list[Path]]) -> dict[str, float] | None:
    """{singer: cosine}: `diffsvc eval`'s speaker similarity (GE2E embedding, resemblyzer) of the
    output against the centroid of each singer's training songs; None without the eval extra."""
    from diffsvc.audio.load import load_audio
    from diffsvc.evaluation.metrics import cosine_similarity
    from diffsvc.evaluation.speaker import load_speaker_encoder

    encoder = load_speaker_encoder("cpu")
    if encoder is None:
        return None
    out = encoder.embed(load_audio(output_wav), 44100)
    result = {}
    for name, paths in references.items():
        centroid = encoder.centroid([load_audio(p) for p in paths], 44100)
        result[name] = cosine_similarity(out, centroid) if out is not None and centroid is not None else float("nan")
    return result


def run(args: argparse.Namespace) -> int:
    import shutil

    import soundfile as sf

    from diffsvc.cli.main import main as cli
    from diffsvc.demo.corpus import SINGER_A, SINGER_B, SINGER_C, song, write_corpus
    from diffsvc.fileio import atomic_write, atomic_write_text

    work = args.workdir
    if args.fresh and work.exists():
        shutil.rmtree(work)
    raw, models, out_dir = work / "raw", work / "models", work / "output"
    singers = (SINGER_A, SINGER_B)  # raw/singer_a/, raw/singer_b/: one model for both
    content, vocoder, notes = _stand_ins()
    for note in notes:
        print(f"demo: {note}")
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config.update(content_encoder=content, vocoder=vocoder)
    base = load_config(DEFAULT_CONFIG)
    config.update(hubert_path=str(Path(base.hubert_path).resolve()), vocoder_ckpt=str(Path(base.vocoder_ckpt).resolve()))
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "config.yaml"
    atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    report: list[tuple[str, float]] = []
    phrase = work / "input" / "singer_c_phrase.wav"
    corpus: dict[str, list[Path]] = {}

    def make_corpus() -> int:
        n_files = max(2, int(round(args.minutes * 60 / 30 / len(singers))))
        for i, singer in enumerate(singers):
            corpus[singer.name] = write_corpus(raw / singer.name, singer, n_files, 30.0, seed=1 + i)
        if not phrase.exists():
            wav, _ = song(SINGER_C, 8.0, seed=7)
            atomic_write(phrase, lambda p: sf.write(p, wav, 44100, subtype="PCM_16", format="WAV"))
        print(f"demo: {n_files} songs of each of {', '.join(s.name for s in singers)} in {raw}/<singer>/, "
              f"a phrase of singer_c (not trained on) in {phrase}")
        return 0

    _stage(report, "generate corpus", make_corpus)
    _stage(report, "preprocess", lambda: cli(["preprocess", str(raw), "--config", str(config_path), "--f0", "parselmouth",
                                               "--content", content, "--yes", "--device", args.device]))
    _stage(report, "train", lambda: cli(["train", "--project", "duet", "--data", str(raw), "--config",
                                          str(config_path), "--models-dir", str(models), "--max-steps", str(args.steps),
                                          "--device", args.device]))
    outputs = {s.name: out_dir / f"singer_c_phrase_as_{s.name}.wav" for s in singers}

    def infer_each() -> int:
        for name, output in outputs.items():
            code = cli(["infer", str(phrase), "--project", "duet", "--models-dir", str(models), "--speaker", name,
                        "--key", str(KEY), "--f0", "parselmouth", "--out", str(output), "--plot", "--overwrite",
                        "--seed", "0", "--device", args.device])
            if code:
                return code
        return 0

    _stage(report, "infer", infer_each)
    conversions = {}
    timbres = measure_timbre(outputs, corpus)
    for name, output in outputs.items():
        timbre = timbres[name]["distance_db"]
        similarity = measure_speaker(output, corpus)
        conversions[name] = {"output": str(output), "melody": measure_melody(phrase, output, KEY),
                             "roughness": measure_roughness(phrase, output),
                             "timbre_distance_db": timbre,
                             "closer_to_own_singer": all(timbre[name] < d for o, d in timbre.items() if o != name),
                             "timbre_position": timbres[name]["position"],
                             "toward_own_singer": timbres[name]["toward_own_singer"],
                             "speaker_similarity": similarity,
                             "more_similar_to_own_singer": None if similarity is None else
                             all(similarity[name] > v for other, v in similarity.items() if other != name)}
    lines = ["# diffsvc demo report", ""]
    lines += [f"- {note}" for note in notes] or ["- real HuBERT-soft and NSF-HiFiGAN weights were used"]
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {name} | {sec:.1f} |" for name, sec in report]
    lines += ["", f"One model trained on {' and '.join(outputs)}; singer_c's phrase ({phrase}) converted to each.", ""]
    for name, c in conversions.items():
        check, timbre = c["melody"], c["timbre_distance_db"]
        lines += [f"## as {name}", "",
                  f"Output: {c['output']} ({check['output_samples']} samples; input {check['input_samples']})",
                  f"Melody check (output f0 against input f0 + {KEY} semitones, parselmouth, "
                  f"{check['voiced_frames_both']} frames voiced in both): median {check['median_abs_cents']:.1f} cents, "
                  f"90th percentile {check['p90_abs_cents']:.1f} cents",
                  f"Smoothness check (frame-to-frame roughness of the output's mel over the input's, both analysed "
                  f"from the audio): {c['roughness']['ratio']:.2f}x (1.0: as smooth as the input; stripes give "
                  "several times)",
                  "Timbre check (RMS difference of average mel spectra to each singer's training songs): "
                  + ", ".join(f"{other} {d:.1f} dB" for other, d in timbre.items())
                  + f" ({'closer to' if c['closer_to_own_singer'] else 'NOT closer to'} {name})",
                  "Timbre direction (where the spectrum shape lies between each other singer's, 0, and "
                  f"{name}'s, 1): " + ", ".join(f"from {other} {p:.2f}" for other, p in c["timbre_position"].items())
                  + f" ({'further towards' if c['toward_own_singer'] else 'NOT further towards'} {name} than the "
                  "other conversion)"]
        similarity = c["speaker_similarity"]
        lines += ["Speaker similarity (diffsvc eval's GE2E cosine to each singer's training songs): " + (
            ", ".join(f"{other} {v:.3f}" for other, v in similarity.items())
            + f" ({'more' if c['more_similar_to_own_singer'] else 'NOT more'} similar to {name})"
            if similarity is not None else "not computed (install diffsvc[eval])"), ""]
    text = "\n".join(lines)
    atomic_write_text(work / "report.md", text)
    atomic_write_text(work / "report.json", json.dumps({
        "stand_ins": notes, "stages": dict(report), "singers": list(outputs), "conversions": conversions}, indent=1))
    print("\n" + text)
    if notes:
        print("demo: this run used STAND-INS; real conversion needs the public weights in models/ (check: diffsvc models)")
    return 0
