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
