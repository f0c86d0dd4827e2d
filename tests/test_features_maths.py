"""Pitch maths, mel2ph and the mel spectrogram against the original's fixtures."""

import numpy as np
import pytest
import torch

from diffsvc.audio.mel import MelExtractor, mel_basis
from diffsvc.features.align import align_content_to_mel
from diffsvc.features.pitch import denorm_f0, f0_to_coarse, f0_to_coarse_numpy, norm_interp_f0, shift_key


@pytest.fixture(scope="module")
def coarse(fixtures_dir):
    return np.load(fixtures_dir / "f0_coarse.npz")


def test_coarse_point_values_and_sweep(coarse):
    f0 = torch.tensor(coarse["f0_values"], dtype=torch.float32)
    assert f0_to_coarse(f0).tolist() == coarse["coarse_torch"].tolist()
    assert f0_to_coarse_numpy(coarse["f0_values"]).tolist() == coarse["coarse_numpy"].tolist()
    sweep = torch.tensor(coarse["sweep_f0"], dtype=torch.float32)
    np.testing.assert_array_equal(f0_to_coarse(sweep).numpy(), coarse["sweep_coarse_torch_f32"])
    np.testing.assert_array_equal(f0_to_coarse_numpy(coarse["sweep_f0"]), coarse["sweep_coarse_numpy"])


def test_norm_interp_f0_track_and_all_unvoiced(coarse):
    f0, uv = norm_interp_f0(coarse["track_f0_hz"])
    np.testing.assert_allclose(f0.numpy(), coarse["track_f0_norm"], atol=1e-6)
    np.testing.assert_array_equal(uv.numpy(), coarse["track_uv"])
    f0t, uvt = norm_interp_f0(torch.tensor(coarse["track_f0_hz"], dtype=torch.float32))
    np.testing.assert_allclose(f0t.numpy(), coarse["track_f0_norm_from_torch_input"], atol=1e-6)
    z, zuv = norm_interp_f0(np.zeros(8))
    np.testing.assert_array_equal(z.numpy(), coarse["allzero_f0_norm"])
    np.testing.assert_array_equal(zuv.numpy(), coarse["allzero_uv"])


def test_model_coarse_chain_and_key_shift(coarse):
    f0, _ = norm_interp_f0(coarse["track_f0_hz"])
    padding = torch.from_numpy(coarse["track_pitch_padding"])
    den = denorm_f0(f0[None], padding)
    np.testing.assert_allclose(den.numpy(), coarse["track_f0_denorm"], atol=1e-6 * 1100)
    np.testing.assert_array_equal(f0_to_coarse(den).numpy(), coarse["track_coarse_model"])
    shifted = shift_key(f0[None], int(coarse["key_shift"]))
    np.testing.assert_allclose(shifted.numpy(), coarse["track_f0_norm_shifted"], atol=1e-6)
    np.testing.assert_array_equal(f0_to_coarse(denorm_f0(shifted)).numpy(), coarse["track_coarse_shifted"])
    # The original's clamp: above f0_max becomes 0 in log2 (1 Hz), i.e. coarse 1, not unvoiced.
    assert (shifted[shifted < 1] == 0).all() and (shifted == 0).any()


def test_mel2ph_matches_original_get_align(fixtures_dir):
    ref = np.load(fixtures_dir / "align_ref.npz")
    for n_content, n_mel in ref["pairs_hubert_mel"]:
        np.testing.assert_array_equal(align_content_to_mel(int(n_content), int(n_mel)),
                                      ref[f"mel2ph_{n_content}_{n_mel}"])


def test_mel_matches_nsf_hifigan(fixtures_dir):
    ref = np.load(fixtures_dir / "mel_ref.npz")
    np.testing.assert_allclose(mel_basis(44100, 2048, 128, 40.0, 16000.0), ref["mel_basis"], atol=1e-7)
    extractor = MelExtractor()
    mel = extractor.numpy(ref["signal"])
    assert mel.shape == ref["mel_log10"].shape == (129, 128)
    assert extractor.num_frames(len(ref["signal"])) == 129 == len(ref["signal"]) // 512
    np.testing.assert_allclose(mel, ref["mel_log10"], atol=1e-4, rtol=0)
    ln = extractor.ln_mel(torch.from_numpy(ref["signal"])).numpy()
    np.testing.assert_allclose(ln, ref["mel_ln"], atol=1e-4, rtol=0)


def test_mel_batched_equals_single():
    rng = np.random.default_rng(0)
    wavs = rng.standard_normal((3, 44100)).astype(np.float32) * 0.1
    extractor = MelExtractor()
    batched = extractor(torch.from_numpy(wavs))
    for i in range(3):
        torch.testing.assert_close(batched[i], extractor(torch.from_numpy(wavs[i])))
