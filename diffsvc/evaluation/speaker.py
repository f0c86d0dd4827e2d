"""Speaker embeddings for `diffsvc eval`: resemblyzer's GE2E encoder (the optional extra
`pip install diffsvc[eval]`; its weights ship inside the wheel, nothing is downloaded).

    encoder = load_speaker_encoder("cpu")        # None when resemblyzer is not installed
    e = encoder.embed(wav, 44100)                # float32 [256], unit length; None for silence
    c = encoder.centroid([wav1, wav2], 44100)    # the normalised mean of the embeddings

GE2E: Wan et al. 2018, "Generalized end-to-end loss for speaker verification" (ICASSP); the
resemblyzer model is trained on speech (LibriSpeech, VoxCeleb), so on singing it measures voice
timbre roughly: compare figures between checkpoints and songs, not with speech papers.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

INSTALL_HINT = "pip install 'diffsvc[eval]' (resemblyzer)"
MIN_SECONDS = 0.3  # less speech than this after resemblyzer's silence trimming: no embedding


def speaker_encoder_available() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            import resemblyzer  # noqa: F401
    except ImportError:
        return False
    return True


class SpeakerEncoder:
    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder
        # resemblyzer reads its bundled pretrained.pt with torch.load, whose default since torch 2.6
        # is weights_only=True (a plain state dict: nothing is unpickled as code)
        self.model = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-length float32 [256] for a mono waveform, or None when too little voice is left
        after resemblyzer's volume normalisation and silence trimming (silence, a click)."""
        from resemblyzer import preprocess_wav
        from resemblyzer.hparams import sampling_rate

        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if wav.size < MIN_SECONDS * sample_rate or not np.any(wav):
            return None
        prepared = preprocess_wav(wav, source_sr=sample_rate)
        if prepared.size < MIN_SECONDS * sampling_rate:
            return None
        return self.model.embed_utterance(prepared).astype(np.float32)

    def centroid(self, wavs, sample_rate: int) -> np.ndarray | None:
        """The normalised mean embedding of several recordings (a singer's voice), None if none embeds."""
        embeddings = [e for e in (self.embed(w, sample_rate) for w in wavs) if e is not None]
        if not embeddings:
            return None
        mean = np.mean(embeddings, axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_speaker_encoder(device: str = "cpu") -> SpeakerEncoder | None:
    """The GE2E encoder on `device`, or None when the extra is not installed."""
    if not speaker_encoder_available():
        return None
    return SpeakerEncoder(device)
