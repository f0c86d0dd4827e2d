"""The whole pipeline at full size: real-time factor of every stage, the original way against ours,
side by side in one run. Writes benchmarks/results/pipeline.md (or pipeline-cuda.md on a GPU).

    python benchmarks/pipeline.py [--device cpu|cuda] [--seconds 30] [--repeats 2] [--tiny]

Models (random weights, release architecture, saved in the real file formats and loaded through
the same code `diffsvc infer` uses): DiffNet 384 channels x 20 layers, HuBERT-soft (12 layers,
768 wide; the bshall v0.1 file layout), NSF-HiFiGAN (512 initial channels, the 20221211 release's
config). f0: parselmouth for every run, to keep f0 out of the comparison.

Runs, all on the same song, model, encoders and start seed:
- original way: PLMS 50 steps (speedup 20), one stretch at a time in one pass (no windows, batch
  1), the vocoder in one pass per stretch, the whole song in memory, no thread or inference-mode
  settings beyond torch's defaults, every model in torch fp32 (what the original's infer.py does);
- ours: DDIM 20 (the default) under each `--runtimes` cpu_runtime (torch fp32, onnxruntime, auto:
  diffsvc.cpu_runtime), DPM-Solver++ 10, and the distilled student at 1 and 2 steps when
  this checkout has the student sampler (`diffsvc distill`, --sampler consistency): from
  `--student PATH`, or else the random-weight model sampled as a student (the same DiffNet, so the
  same cost per step).

The configurations are interleaved (A B C A B C ...) and each stage's median over the repeats is
reported: on a shared machine, a burst of someone else's work then hits all configurations alike.
`--processes` runs each configuration in its own process, started with its own environment: the
original with OpenMP's default (spinning) waits as its code runs, ours with OMP_WAIT_POLICY=PASSIVE
as `diffsvc infer` sets it, plus ours with the default waits (a library user's process) and the
original with passive waits (what the variable alone gives it). Without it every row shares this
process and its default waits (what a library user gets).
"Denoiser frames" counts the frames the denoiser processed (batch items x frames, summed over
calls): the windows' context and batch padding show up there, separate from the step count.
`--tiny` swaps in tiny models and a 3 s song: a check that the script runs (`benchmarks/gpu.sh
--dry-run` uses it), not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import machine_line, markdown_table, pick_device, release_nsf_config, write_result  # noqa: E402

SR = 44100
STAGES = ["load", "f0", "content", "sampling", "vocoder"]
RELEASE_NSF = release_nsf_config()


def make_project(root: Path, tiny: bool) -> Path:
    """models/bench (DiffNet), models/hubert_soft.pt, models/nsf_hifigan under `root`."""
    import torch

    from diffsvc.features.content.hubert_soft import HubertSoft
    from diffsvc.vocoder import Generator, save_vocoder
    from infer_fixture import TINY_NSF, write_project

    torch.manual_seed(0)
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    hubert = HubertSoft()  # the v0.1 release: 12 layers, 768 wide (the loader accepts only that)
    if tiny:
        nsf = TINY_NSF
        sizes = dict(residual_channels=16, residual_layers=2)
    else:
        nsf = RELEASE_NSF
        sizes = dict(residual_channels=384, residual_layers=20)
    torch.save({"module." + k: v for k, v in hubert.state_dict().items()}, models / "hubert-soft-0d54a1f4.pt")
    write_project(root, "bench", vocoder="nsf-hifigan", timesteps=1000, K_step=1000, sampler="ddim",
                  sampling_steps=20, content_encoder="hubert-soft", hubert_path=str(models / "hubert-soft-0d54a1f4.pt"),
                  **sizes)
    # after write_project, which writes its own tiny vocoder to the same folder
    save_vocoder(Generator.from_config(nsf), nsf, models / "nsf_hifigan")
    return root / "models" / "bench"


class DenoiserCount:
    """Counts denoiser calls and the frames they process: a forward hook on the torch denoiser,
    and a wrapper around the ONNX Runtime session where the converter samples with one (built
    here, once per model: its export is a one-time cost, as the vocoder's, outside the stages)."""

    def __init__(self, conv):
        self.calls = 0
        self.frames = 0
        self.handle = conv.model.denoise_fn.register_forward_hook(self._hook)  # removed after the run (models are shared)
        self.onnx = conv._denoiser()
        if self.onnx is not None:
            session = self.onnx.session

            def counted(spec, *rest):
                self._count(spec)
                return session(spec, *rest)

            self.onnx.session, self._session = counted, session

    def _hook(self, _module, inputs, _output):
        self._count(inputs[0])

    def _count(self, spec):
        self.calls += 1
        self.frames += int(spec.shape[0] * spec.shape[-1])

    def remove(self):
        self.handle.remove()
        if self.onnx is not None:
            self.onnx.session = self._session


_LOADED: dict = {}  # the model files are read once per checkpoint; every run gets a fresh converter


def converter_for(root: Path, device, settings: dict, *, original: bool, student: str | None):
    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    from diffsvc.inference.pipeline import StageTimer

    class CpuStageTimer(StageTimer):
        """Wall seconds per stage and this process's CPU seconds (all threads): on a machine shared
        with other jobs, CPU time shows the work done, wall time what a user waits."""

        def __init__(self, device):
            super().__init__(device=device)
            self.cpu_seconds = {s: 0.0 for s in STAGES}

        @contextmanager
        def __call__(self, stage: str):
            start = time.process_time()
            try:
                with super().__call__(stage):
                    yield
            finally:
                self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.process_time() - start

    os.chdir(root)
    path = Path(student) if student else choose_checkpoint(root / "models", "bench")
    if str(path) not in _LOADED:
        start = time.perf_counter()
        loaded = load_checkpoint(path, device)
        c = loaded.config
        vocoder = load_vocoder_for(c, device)
        encoder = load_content_encoder_for(c, device)
        _LOADED[str(path)] = (loaded, encoder, vocoder, vocoder.window_frames, time.perf_counter() - start)
    loaded, encoder, vocoder, window, load_seconds = _LOADED[str(path)]
    # the original vocodes each stretch in one pass; ours in windows
    vocoder.window_frames = 10**9 if original else window
    conv = SongConverter(loaded, encoder, vocoder, device, InferenceSettings(f0_method="parselmouth", **settings))
    conv.timer = CpuStageTimer(conv.device)
    return conv, DenoiserCount(conv), load_seconds


def run_once(root: Path, song: Path, device, run: dict, student: str | None) -> dict:
    """One conversion: stage seconds (load = reading the song and the models), denoiser calls/frames."""
    import torch

    from diffsvc.audio.load import load_audio
    from diffsvc.audio.spool import spool_audio
    from diffsvc.inference.output import audio_writer

    conv, count, model_seconds = converter_for(root, device, run["settings"], original=run["original"],
                                               student=student if run.get("student") and student else None)
    out = root / f"out_{run['key']}.wav"
    if run["original"]:  # the whole song in memory, written at the end
        with conv.timer("load"):
            wav = load_audio(song, SR)
        result = conv.convert(wav, conv.analyse(wav), seed=0)
        with audio_writer(out, SR) as write:
            write(result.audio)
    else:
        with conv.timer("load"):
            wav = spool_audio(song, SR)
        with wav, audio_writer(out, SR) as write:
            conv.convert_to(write, wav, conv.analyse(wav), seed=0)
    info = dict(conv.timer.seconds)
    info.update({f"cpu_{k}": v for k, v in conv.timer.cpu_seconds.items()})
    info["models_s"] = model_seconds  # reading the model files (the first run's; once per checkpoint)
    plan = conv._last_plan
    info["plan"] = f"{plan.window_frames} x {plan.batch_size}" if plan else "-"
    info["calls"], info["frames"] = count.calls, count.frames
    count.remove()
    info["song_s"] = len(wav) / SR
    if device.type == "cuda":
        info["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return info


def measure(args, runs: list[dict], device, results: dict[str, list[dict]]) -> None:
    """Warm-up, then args.repeats interleaved rounds of every run; each run's figures are appended
    to results[key] and printed as a RUN line (see results_from_log)."""
    from infer import make_song

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, args.tiny)
        song = make_song(root / "song.wav", args.seconds)
        warm = make_song(root / "warm.wav", min(args.seconds, 1.0))
        with contextlib.ExitStack() as stack:
            if args.processes:  # each row in its own process, started with the row's environment
                workers = {r["key"]: stack.enter_context(Worker(args, root, r)) for r in runs}

                def once(song_path: Path, r: dict) -> dict:
                    return workers[r["key"]].run(song_path)
            else:
                def once(song_path: Path, r: dict) -> dict:
                    return run_once(root, song_path, device, r, args.student)

            for r in runs:  # untimed, on 1 s: first calls load libraries and build kernels (oneDNN, cuDNN)
                once(warm, r)
                print("warm-up", r["key"], file=sys.stderr, flush=True)
            for k in range(args.repeats):
                for r in runs:
                    info = once(song, r)
                    results[r["key"]].append(info)
                    print("RUN", k, r["key"], json.dumps({s: round(info[s], 2) for s in STAGES}),
                          "cpu", json.dumps({s: round(info["cpu_" + s], 2) for s in STAGES}), info["plan"],
                          info["calls"], info["frames"], round(info["song_s"], 2), file=sys.stderr, flush=True)


class Worker:
    """One row's own process (--processes): this script with --worker, started with the row's
    environment (`env`: set, `unset`: removed) so that what is read when torch loads (OpenMP's
    wait policy) differs between rows; it converts a song per request (one JSON line each way)."""

    def __init__(self, args, root: Path, run: dict):
        import subprocess

        from procs import started

        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(root), "--device", args.device,
               "--runtimes", *args.runtimes, "--student-steps", *map(str, args.student_steps), "--processes"]
        cmd += (["--student", args.student] if args.student else []) + (["--tiny"] if args.tiny else [])
        env = {k: v for k, v in os.environ.items() if k not in run.get("unset", ())}
        env.update(run.get("env", {}))
        self.key = run["key"]
        self._started = started(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def __enter__(self) -> "Worker":
        self.proc = self._started.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._started.__exit__(*exc)  # kills the worker's process group

    def run(self, song: Path) -> dict:
        self.proc.stdin.write(json.dumps({"song": str(song), "key": self.key}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker for {self.key} exited (rc {self.proc.wait()})")
        return json.loads(line)


def worker_main(args) -> None:
    """--worker ROOT: convert the songs named on stdin with the runs named there; figures to stdout."""
    out, sys.stdout = sys.stdout, sys.stderr  # anything the pipeline prints goes to stderr
    device = pick_device(args.device)
    runs = {r["key"]: r for r in runs_for(args)}
    for line in sys.stdin:
        request = json.loads(line)
        info = run_once(Path(args.worker), Path(request["song"]), device, runs[request["key"]], args.student)
        out.write(json.dumps(info) + "\n")
        out.flush()


def results_from_log(path: Path, runs: list[dict]) -> dict[str, list[dict]]:
    """The per-run figures printed as RUN lines: round, key, wall seconds per stage, 'cpu', CPU
    seconds per stage, the window plan ('W x B'), denoiser calls and frames, song seconds."""
    results: dict[str, list[dict]] = {r["key"]: [] for r in runs}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("RUN "):
            continue
        head, rest = line[4:].split(" ", 2)[:2], line[4:].split(" ", 2)[2]
        wall_text, tail = rest.split(" cpu ", 1)
        cpu_text, plan_and_counts = tail.split("} ", 1)
        w, _x, b, calls, frames, song_s = plan_and_counts.split()
        info = dict(json.loads(wall_text))
        info.update({f"cpu_{k}": v for k, v in json.loads(cpu_text + "}").items()})
        info.update(plan=f"{w} x {b}", calls=int(calls), frames=int(frames), song_s=float(song_s),
                    models_s=float("nan"))
        if head[1] in results:
            results[head[1]].append(info)
    return results


def old_planner_ratio(num_frames: int) -> float:
    """Denoiser frames per call of the window planner as it was before benchmarks/pipeline.py
    (windows up to 1500 frames with 32 of context each side, unbalanced, batched up to 4 and
    padded to the longest in steps of 64), over one pass of `num_frames`."""
    from diffsvc.vocoder.windowed import window_spans

    if num_frames <= 1500:
        return 1.0
    lengths = [min(num_frames, e + 32) - max(0, s - 32) for s, e in window_spans(num_frames, 1500, 16)]
    frames = 0
    for k in range(0, len(lengths), 4):
        batch = lengths[k:k + 4]
        frames += len(batch) * -(-max(batch) // 64) * 64
    return frames / num_frames


def student_available(student: str | None) -> str:
    """'' when the student rows can run, else why not. Without --student the rows sample the
    random-weight model with the student's sampler: a student is the same DiffNet (initialised
    from its teacher), so its cost per step is the teacher's and only the step count differs."""
    from diffsvc.sampling import SAMPLERS

    if "consistency" not in SAMPLERS:
        return "this checkout has no student sampler yet (`diffsvc distill`, --sampler consistency)"
    if student and not Path(student).exists():
        return f"{student} does not exist"
    return ""


def runs_for(args) -> list[dict]:
    """The original (torch fp32, as its code runs), then ours: DDIM 20 under each of
    args.runtimes (cpu_runtime; `auto` is the default), DPM-Solver++ 10 and the student under auto.
    --processes: ours wait passively as `diffsvc infer` makes them; two more rows, the first
    --runtimes row with OpenMP's default waits and the original with passive waits."""
    from diffsvc.cpu_runtime import denoiser_runtime, resolve_cpu_runtime

    passive = {"OMP_WAIT_POLICY": "PASSIVE"}

    def named(runtime: str, env: dict | None = None) -> str:
        """What the setting runs under the row's environment (auto's denoiser depends on it)."""
        saved = os.environ.get("OMP_WAIT_POLICY")
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ.update(env or {})
        try:
            models, denoiser = resolve_cpu_runtime(runtime, "cpu"), denoiser_runtime(runtime, "cpu")
        finally:
            os.environ.pop("OMP_WAIT_POLICY", None)
            if saved is not None:
                os.environ["OMP_WAIT_POLICY"] = saved
        chosen = models if denoiser == models else f"{models}, the denoiser {denoiser}"
        return f"auto = {chosen}" if runtime == "auto" else chosen

    ours_env = passive if args.processes else None
    waits = ", OMP_WAIT_POLICY=PASSIVE (as `diffsvc infer` sets it)" if args.processes else ""
    original = "original way: PLMS 50, one stretch at a time, one pass each, torch fp32"
    runs = [dict(key="original", label=original, original=True, unset=("OMP_WAIT_POLICY",),
                 settings=dict(sampler="plms", sampling_steps=50, batch_size=1, window_frames=10**6,
                               cpu_runtime="torch"))]
    for runtime in args.runtimes:
        runs.append(dict(key="ddim20" if runtime == "auto" else f"ddim20-{runtime}",
                         label=f"ours: DDIM 20 (the default), cpu_runtime {named(runtime, ours_env)}{waits}",
                         original=False, env=ours_env or {},
                         settings=dict(sampler="ddim", sampling_steps=20, cpu_runtime=runtime)))
    if args.processes:
        runtime = args.runtimes[0]
        runs.append(dict(key=f"ddim20-{runtime}-spin", label=f"ours: DDIM 20, cpu_runtime {named(runtime)}, "
                         "OpenMP's default waits (as in a library user's process)", original=False,
                         unset=("OMP_WAIT_POLICY",), settings=dict(sampler="ddim", sampling_steps=20, cpu_runtime=runtime)))
        runs.append(dict(runs[0], key="original-passive", label=original + ", OMP_WAIT_POLICY=PASSIVE (not the "
                         "original's setting: what the variable alone gives it)", unset=(), env=passive))
    runs.append(dict(key="dpm10", label=f"ours: DPM-Solver++ 10, cpu_runtime {named('auto', ours_env)}{waits}",
                     original=False, env=ours_env or {},
                     settings=dict(sampler="dpm-solver++", sampling_steps=10, cpu_runtime="auto")))
    for steps in args.student_steps:
        runs.append(dict(key=f"student{steps}", label=f"ours: the student, {steps} step(s), cpu_runtime "
                         f"{named('auto', ours_env)}{waits}", original=False, student=True, env=ours_env or {},
                         settings=dict(sampler="consistency", sampling_steps=steps, cpu_runtime="auto")))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is reported")
    p.add_argument("--student", help="a student checkpoint from `diffsvc distill` (default: the random model "
                                     "sampled as a student; the rows run when this checkout has the student sampler)")
    p.add_argument("--student-steps", type=int, nargs="*", default=[1, 2])
    p.add_argument("--runtimes", nargs="*", default=["torch", "onnxruntime", "auto"],
                   help="cpu_runtime settings to run DDIM 20 under (auto: the default; its row is the headline)")
    p.add_argument("--tiny", action="store_true", help="tiny models, 3 s song: a check that the script runs")
    p.add_argument("--out", default=None, help="result file name under benchmarks/results/")
    p.add_argument("--note", default="", help="a paragraph added under the tables (what was unusual about this run)")
    p.add_argument("--from-log", help="make the table from the RUN lines of an earlier run's log (stderr) instead "
                                      "of measuring: for a run that had to be stopped before its last round")
    p.add_argument("--processes", action="store_true",
                   help="run each row in its own process: the original with OpenMP's default (spinning) waits, "
                        "ours as `diffsvc infer` runs (OMP_WAIT_POLICY=PASSIVE), plus the first --runtimes row "
                        "with the default waits")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # ROOT: one row's process (see Worker)
    args = p.parse_args()
    if args.worker:
        worker_main(args)
        return
    import torch

    device = pick_device(args.device)
    if args.tiny:
        args.seconds = min(args.seconds, 3.0)
    runs = runs_for(args)
    why_no_student = student_available(args.student)
    if why_no_student:
        print(f"student rows skipped: {why_no_student}", file=sys.stderr)
        runs = [r for r in runs if not r.get("student")]
    results: dict[str, list[dict]] = {r["key"]: [] for r in runs}
    cwd = os.getcwd()
    if args.from_log:
        results = results_from_log(Path(args.from_log), runs)
        runs = [r for r in runs if results[r["key"]]]
    else:
        measure(args, runs, device, results)
    os.chdir(cwd)
    song_s = results[runs[0]["key"]][0]["song_s"]
    done = sorted({len(results[r["key"]]) for r in runs})
    rows, totals, cpu_rows, cpu_totals = [], {}, [], {}
    for r in runs:
        infos = results[r["key"]]
        med = {s: statistics.median(i[s] for i in infos) for s in STAGES}
        total = statistics.median(sum(i[s] for s in STAGES) for i in infos)
        totals[r["key"]] = total
        cpu = {s: statistics.median(i["cpu_" + s] for i in infos) for s in STAGES}
        cpu_totals[r["key"]] = statistics.median(sum(i["cpu_" + s] for s in STAGES) for i in infos)
        cpu_rows.append([r["label"]] + [cpu[s] / song_s for s in STAGES] + [cpu_totals[r["key"]] / song_s])
        rows.append([r["label"]] + [med[s] / song_s for s in STAGES] + [total / song_s,
                                                                          statistics.median(i["models_s"] for i in infos),
                                                                          infos[0]["calls"],
                                                                          infos[0]["frames"], infos[0]["plan"]])
    base = totals["original"]
    for row, r in zip(rows, runs):
        row.append(f"{base / totals[r['key']]:.2f}x")
    for row, r in zip(cpu_rows, runs):
        row.append(f"{cpu_totals['original'] / cpu_totals[r['key']]:.2f}x")
    frames = {r["key"]: results[r["key"]][0]["frames"] / max(1, results[r["key"]][0]["calls"]) for r in runs}
    per_call = frames["ddim20"] / frames["original"]
    size = ("tiny models (a check that the script runs, not a measurement)" if args.tiny else
            "DiffNet 384 x 20, HuBERT-soft (release size), NSF-HiFiGAN (release size, 512 channels); random weights")
    student_line = (f"The student rows ran from {args.student}." if not why_no_student and args.student else
                    "The student rows sample the random-weight model (the same size as the teacher rows) with the student's sampler "
                    "(consistency): a student is the same DiffNet as its teacher, so a step costs the same; "
                    "only the number of steps differs." if not why_no_student else
                    f"**Student: not measured in this run** ({why_no_student}); rerun with `--student PATH` once "
                    "`diffsvc distill` has made one.")
    text = "\n".join([
        "# The whole pipeline, full size" + (" (tiny check)" if args.tiny else ""), "",
        f"Machine: {machine_line(device)}. Song: {song_s:g} s of synthetic singing (tests/audio_synth.py). "
        f"Models: {size}. f0: parselmouth in every run.", "",
        "load: reading the song; models load s: reading the model files (seconds, once per checkpoint, not in the "
        "total). "
        f"Each configuration ran {' or '.join(map(str, done))} time(s), interleaved (A B C, A B C, ...) after one untimed warm-up "
        "each; every figure is the median. " + ("The machine's cores were shared with other people's jobs while "
                                                 "this ran: the interleaving spreads their load over all rows alike, "
                                                 "but single figures can be far off."
                                                 if device.type == "cpu" else ""), "",
        "## Real-time factor per stage (seconds of work per second of song; lower is faster)", "",
        markdown_table(["run"] + STAGES + ["total", "models load s", "denoiser calls", "denoiser frames", "windows (frames x batch)",
                                           "faster than the original"], rows), "",
        "## CPU seconds per second of song (this process, all threads; lower is less work)", "",
        "The same runs counted in CPU time, which other people's jobs on the machine disturb less than wall time.",
        "",
        markdown_table(["run"] + STAGES + ["total", "less work than the original"], cpu_rows), "",
        f"Denoiser frames per call, ours (DDIM 20) against the original's one pass per stretch: {per_call:.3f} "
        f"(context around each window, and batch items padded to the longest). The planner before this run's "
        f"changes (windows of at most 1500 frames, 4 per batch on the CPU, the last window shorter) would have "
        f"sampled this song at {old_planner_ratio(results['original'][0]['frames'] // max(1, results['original'][0]['calls'])):.3f}.", "",
        student_line, "",
    ] + ([args.note, ""] if args.note else []))
    name = args.out or ("pipeline-tiny.md" if args.tiny else
                        "pipeline-cuda.md" if device.type == "cuda" else "pipeline.md")
    path = write_result(name, text)
    print(text)
    print(f"wrote {path}", file=sys.stderr)
    del torch


if __name__ == "__main__":
    main()
