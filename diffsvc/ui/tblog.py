"""The latest validation picture and audio of a training run, read from its TensorBoard logs
(the trainer writes `mel/0` as a figure and `audio/0_sampled` at each validation)."""

from __future__ import annotations

from pathlib import Path


def latest_validation(log_dir: str | Path) -> tuple[int | None, bytes | None, bytes | None]:
    """(step, PNG bytes of the first validation mel, WAV bytes of its sampled audio); Nones when
    the logs hold no validation yet."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return None, None, None
    from tensorboard.backend.event_processing.event_accumulator import AUDIO, IMAGES, SCALARS, EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={IMAGES: 2, AUDIO: 2, SCALARS: 1})
    acc.Reload()
    tags = acc.Tags()
    step, png, wav = None, None, None
    images = sorted(t for t in tags.get("images", []) if t.startswith("mel/"))
    if images:
        event = acc.Images(images[0])[-1]
        step, png = event.step, event.encoded_image_string
    audio = sorted(t for t in tags.get("audio", []) if t.endswith("_sampled"))
    if audio:
        event = acc.Audio(audio[0])[-1]
        wav = event.encoded_audio_string
        step = step if step is not None else event.step
    return step, png, wav


def logged_loss(log_dir: str | Path, tag: str = "train/loss") -> tuple[list[int], list[float]]:
    """(steps, losses) of the training loss the trainer logged to TensorBoard (every log_interval
    steps, by every run of the project, from the page or the command line); empty without logs."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return [], []
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})  # 0: every point
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return [], []
    latest = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run's rows replace the earlier ones
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


def loss_curve(progress: tuple[list[int], list[float]], logged: tuple[list[int], list[float]]
               ) -> tuple[list[int], list[float]]:
    """The whole loss curve of a project: the page's progress file (every step of the runs it
    started) where it has rows, the TensorBoard log before that (steps trained earlier, e.g. by
    `diffsvc train` or `diffsvc demo` at a terminal, every log_interval steps)."""
    steps, losses = progress
    first = steps[0] if steps else None
    earlier = [(s, v) for s, v in zip(*logged) if first is None or s < first]
    return [s for s, _ in earlier] + list(steps), [v for _, v in earlier] + list(losses)
