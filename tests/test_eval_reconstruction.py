"""reconstruction_figures: the function eval (and training's validation) calls on a singer's pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from diffsvc.data.prepared import PreparedData
from diffsvc.evaluation.reconstruction import reconstruction_figures
from diffsvc.features.f0 import make_f0_extractor
from diffsvc.vocoder import GriffinLimVocoder
from infer_fixture import tiny_model
from prepared_fixture import write_prepared


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    data = PreparedData(write_prepared(tmp_path_factory.mktemp("data"), lengths=(40,), valid_lengths=(40, 56)))
    return [data.load(p) for p in data.pieces("valid")]


@pytest.fixture(scope="module")
def model():
    return tiny_model(tiny_config())


class Perfect(torch.nn.Module):
    """A model whose samples are the real mels (reads ref_mel): every distance must be 0."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.K_step, self.num_timesteps, self.n_mels = inner.K_step, inner.num_timesteps, inner.n_mels

    def schedule(self):
        return self.inner.schedule()

    def sample(self, units, mel2ph, f0, sampler, *, ref_mel=None, **kwargs):
        return ref_mel


def test_a_perfect_model_scores_zero(pieces, model):
    figures = reconstruction_figures(Perfect(model), pieces, sampling_steps=2).figures
    assert figures == {"recon_log_mel_l1": 0.0, "recon_mcd_db": 0.0}


def test_figures_are_seeded_and_compare_across_calls(pieces, model):
    a = reconstruction_figures(model, pieces, sampler="ddim", sampling_steps=2, seed=1).figures
    b = reconstruction_figures(model, pieces, sampler="ddim", sampling_steps=2, seed=1).figures
    c = reconstruction_figures(model, pieces, sampler="ddim", sampling_steps=2, seed=2).figures
    assert a == b and a != c
    assert a["recon_mcd_db"] > 0 and math.isfinite(a["recon_log_mel_l1"])
    short = reconstruction_figures(model, pieces, sampler="ddim", sampling_steps=2, seed=1, max_frames=20)
    assert [m.shape[0] for m in short.mels] == [20, 20]


def test_pitch_figures_with_a_vocoder_and_empty_input(pieces, model):
    config = tiny_config()
    result = reconstruction_figures(
        model, pieces, sampler="ddim", sampling_steps=2, vocoder=GriffinLimVocoder.from_config(config, n_iter=2),
        f0_extractor=make_f0_extractor("parselmouth"), mel_range=(config.mel_vmin, config.mel_vmax))
    for key in ("recon_median_abs_cents", "recon_rpa", "recon_voicing_recall", "recon_voicing_false_alarm"):
        assert key in result.figures
    assert 0.0 <= result.figures["recon_voicing_recall"] <= 1.0
    assert [len(a) for a in result.audio] == [40 * 512, 56 * 512]
    with np.errstate(divide="raise", invalid="raise"):
        empty = reconstruction_figures(model, [], vocoder=GriffinLimVocoder.from_config(config, n_iter=1),
                                       f0_extractor=make_f0_extractor("parselmouth")).figures
    assert all(math.isnan(v) for v in empty.values())


def test_validation_figures_for_training(pieces, model):
    from diffsvc.evaluation.reconstruction import ValidationFigures

    config = tiny_config(f0_extractor="crepe")  # conditioning CREPE: pitch is re-tracked with Praat
    figures = ValidationFigures(config, "cpu", vocoder=GriffinLimVocoder.from_config(config, n_iter=1),
                                sampling_steps=2)
    scalars = figures(model, pieces)
    assert figures.retracker().name == "parselmouth"
    assert {"eval/recon_mcd_db", "eval/recon_log_mel_l1", "eval/recon_voicing_recall"} <= set(scalars)
    assert scalars == figures(model, pieces)  # fixed noise: values compare across validations
    assert set(ValidationFigures(config, "cpu", sampling_steps=2)(model, pieces)) == \
        {"eval/recon_mcd_db", "eval/recon_log_mel_l1"}  # without a vocoder: mel figures only
