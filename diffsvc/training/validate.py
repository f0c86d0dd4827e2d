"""Validation: the loss on the validation pieces, and what `infer` would make of the first few.

The loss uses fixed noise per piece (randomness stream 1), so its values compare across steps.
The first `num_valid_plots` pieces are sampled from pure noise with the project's sampler and
sampling steps (config `sampler`, `sampling_steps`, as `diffsvc infer` samples by default) and
vocoded with the project's vocoder (config `vocoder`, through the same factory as infer), so
TensorBoard shows what a conversion would give at this step.
Every validation also logs `eval/*` scalars beside the loss: the reconstruction and pitch figures
of `diffsvc eval` over all validation pieces (diffsvc.evaluation.reconstruction.ValidationFigures:
DDIM 4 steps from fixed noise, pitch re-tracked from the vocoded output by a second extractor).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from diffsvc.config import Config
from diffsvc.data.batch import TrainingBatch, collate
from diffsvc.data.dataset import PieceDataset
from diffsvc.training.devices import autocast
from diffsvc.training.logging import LogWriteError, TrainLogger
from diffsvc.training.objective import LossFunction
from diffsvc.training.randomness import PLOT_STREAM, VALID_STREAM, item_seed


def validation_sampler(config: Config, model):
    """The sampler `infer` uses by default for this project: config.sampler with config.sampling_steps."""
    from diffsvc.sampling import make_sampler

    return make_sampler(config.sampler, model.schedule(), config.sampling_steps)


class Validator:
    """Runs validation for a training run (on the main process only).

    `validator(model, loss, step)` returns the mean validation loss (None without validation
    pieces), logs it as val/loss, and logs mel pictures (target above, sampled below) and, when the
    vocoder loads, audio of the first num_valid_plots pieces. A multi-singer project also logs
    val/loss/<singer> and renders at least one piece of every singer (tags mel/<singer>/<index>).
    Audio never stops training: a vocoder that fails to load or run is reported once and
    validation goes on without audio."""

    def __init__(self, valid_set: PieceDataset, config: Config, device: torch.device, amp_dtype: torch.dtype | None,
                 logger: TrainLogger, generator: torch.Generator, log: Callable[[str], None] = print):
        self.valid_set = valid_set
        self.config = config
        self.device = device
        self.amp_dtype = amp_dtype
        self.logger = logger
        self.generator = generator
        self.log = log
        self._vocoder: object = "unloaded"
        self._target_audio_logged: set[int] = set()
        self._figures = None  # ValidationFigures, made on first use

    def __call__(self, model, loss: LossFunction, step: int) -> float | None:
        if len(self.valid_set) == 0:
            return None
        model.eval()
        losses: list[float] = []
        per_singer: dict[str, list[float]] = {}
        plots = self.plot_indices()
        try:
            with torch.no_grad():
                for index in range(len(self.valid_set)):
                    batch = collate([self.valid_set[index]]).to(self.device)
                    with autocast(self.device, self.amp_dtype):
                        losses.append(float(loss(batch, stream=VALID_STREAM)))
                    singer = self.valid_set.singer(index)
                    if singer is not None:
                        per_singer.setdefault(singer, []).append(losses[-1])
                    if index in plots:
                        self.render(model, index, batch, step)
            figures = self.figures(model)
        finally:
            model.train()
        value = float(np.mean(losses))
        scalars = {"val/loss": value, **figures}
        scalars.update({f"val/loss/{singer}": float(np.mean(v)) for singer, v in per_singer.items()})
        self.logger.scalars(scalars, step)
        self.logger.flush()
        return value

    def plot_indices(self) -> set[int]:
        """The validation pieces sampled and logged: the first num_valid_plots, and with several
        singers the first piece of every singer among them (at least one per singer)."""
        n = self.config.num_valid_plots
        if n <= 0:
            return set()
        singers = [self.valid_set.singer(i) for i in range(len(self.valid_set))]
        if not any(s is not None for s in singers):
            return set(range(min(n, len(singers))))
        firsts = [singers.index(s) for s in dict.fromkeys(singers)]
        rest = [i for i in range(len(singers)) if i not in firsts]
        return set(firsts + rest[:max(0, n - len(firsts))])

    def render(self, model, index: int, batch: TrainingBatch, step: int) -> torch.Tensor:
        """Sample piece `index` from pure noise (the same noise at every step) as infer would, log
        its picture and audio (tags mel/<singer>/<index> ... with several singers), and return
        the mel [T,M]."""
        self.generator.manual_seed(item_seed(self.config.seed, 0, index, stream=PLOT_STREAM))
        mel = model.sample(batch.units, batch.mel2ph, batch.f0, validation_sampler(self.config, model),
                           generator=self.generator, speaker=batch.speaker)
        mel = mel.clamp(self.config.mel_vmin, self.config.mel_vmax)
        singer = self.valid_set.singer(index)
        tag = f"{index}" if singer is None else f"{singer}/{index}"
        self.logger.mel_image(f"mel/{tag}", batch.mel[0].float().cpu().numpy(), mel[0].float().cpu().numpy(),
                              step, self.config.mel_vmin, self.config.mel_vmax)
        vocoder = self.vocoder()
        if vocoder is not None:
            try:
                f0_hz = torch.pow(2.0, batch.f0[0])  # interpolated f0, as the original vocoded with
                if index not in self._target_audio_logged:
                    self.logger.audio(f"audio/{tag}_target", vocoder.vocode(batch.mel[0], f0_hz), step,
                                      vocoder.sample_rate)
                    self._target_audio_logged.add(index)
                self.logger.audio(f"audio/{tag}_sampled", vocoder.vocode(mel[0], f0_hz), step, vocoder.sample_rate)
            except LogWriteError:
                raise  # the logs cannot be written: not the vocoder's fault
            except Exception as e:  # noqa: BLE001 - audio in the logs must never stop training
                self.log(f"validation audio disabled: the vocoder failed ({e})")
                self._vocoder = None
        return mel[0]

    def figures(self, model) -> dict[str, float]:
        """`diffsvc eval`'s reconstruction and pitch figures of the validation pieces ({} when they
        cannot be computed: said once, training goes on)."""
        if self._figures is False:
            return {}
        try:
            if self._figures is None:
                from diffsvc.evaluation.reconstruction import ValidationFigures

                self._pieces = [dict(self.valid_set.data.load(p), speaker=self.valid_set.speaker(i))
                                for i, p in enumerate(self.valid_set.pieces)]
                self._figures = ValidationFigures(self.config, self.device, vocoder=self.vocoder(), log=self.log)
            return self._figures(model, self._pieces)
        except LogWriteError:
            raise
        except Exception as e:  # noqa: BLE001 - figures in the logs must never stop training
            self.log(f"validation figures disabled ({e})")
            self._figures = False
            return {}

    def vocoder(self):
        """The project's vocoder (config.vocoder) from the factory infer uses, or None when it
        cannot be loaded (said once)."""
        if self._vocoder == "unloaded":
            self._vocoder = None
            try:
                from diffsvc.inference.components import load_vocoder_for

                self._vocoder = load_vocoder_for(self.config, self.device)
            except Exception as e:  # noqa: BLE001 - audio in the logs must never stop training
                self.log(f"validation audio disabled: cannot use the {self.config.vocoder} vocoder ({e})")
        return self._vocoder
