"""Several singers in one model: the learned speaker embedding, and choosing or blending singers.

A multi-singer model has one learned vector per singer (the size of the conditioning, H) which is
added to every real frame's conditioning, as DiffSinger does (`decoder_inp + spk_embed`, its
FastSpeech2 with `use_spk_id`). The table lives at the original's place and name,
`fs2.spk_embed_proj` (checkpoint key `model.fs2.spk_embed_proj.weight`, shape [n_singers, H]),
so a multi-singer checkpoint differs from a one-singer one by that key alone.

A blend of singers is the weighted sum of their rows (weights normalised to sum 1): weight 1.0 on
one singer is exactly that singer's row. `speaker` arguments are either singer indices (long [B],
training) or blend weights over the table (float [B, n_singers], inference).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import torch
from torch import nn

from diffsvc.errors import DiffSvcError

EMBEDDING_NAME = "spk_embed_proj"  # the original/DiffSinger attribute of fs2 (key fs2.spk_embed_proj.weight)
CHECKPOINT_KEY = "spk_map"  # {singer name: row} in every multi-singer checkpoint (the original's spk_map.json)


class SpeakerEmbedding(nn.Embedding):
    """One learned vector [H] per singer; `names[i]` is row i. Initialised as DiffSinger's
    Embedding: normal with std H^-0.5 (`modules/commons/common_layers.py: Embedding`)."""

    def __init__(self, names: list[str], hidden_size: int):
        super().__init__(len(names), hidden_size)
        self.names = list(names)
        nn.init.normal_(self.weight, mean=0.0, std=hidden_size ** -0.5)

    def vector(self, speaker: torch.Tensor) -> torch.Tensor:
        """[B,H] for singer indices (long [B]) or blend weights (float [B, n_singers])."""
        if speaker.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return self(speaker.long())
        if speaker.dim() != 2 or speaker.shape[1] != self.num_embeddings:
            raise ValueError(f"blend weights must be [B, {self.num_embeddings}], got {tuple(speaker.shape)}")
        return speaker.to(self.weight.dtype) @ self.weight


def attach_speaker_embedding(fs2: nn.Module, names: list[str], hidden_size: int) -> SpeakerEmbedding:
    """Give the conditioning module `fs2` its singer table (as fs2.spk_embed_proj)."""
    embedding = SpeakerEmbedding(names, hidden_size)
    setattr(fs2, EMBEDDING_NAME, embedding)
    return embedding


def speaker_embedding_of(model: nn.Module) -> SpeakerEmbedding | None:
    """The model's singer table (GaussianDiffusion or a wrapper with .fs2), or None for one singer."""
    fs2 = getattr(model, "fs2", None)
    return getattr(fs2, EMBEDDING_NAME, None) if fs2 is not None else None


def singer_name(name: str) -> str:
    """A singer's name in Unicode NFC, the one form names are made and compared in: a folder made on
    macOS spells "ténor" as "te" + U+0301 (NFD), a keyboard types U+00E9; both are the same singer."""
    return unicodedata.normalize("NFC", name)


def row_of(name: str, names: list[str]) -> int:
    """The row of singer `name` in the table `names`, compared as singer_name; ValueError if absent."""
    wanted = singer_name(name)
    for i, listed in enumerate(names):
        if singer_name(listed) == wanted:
            return i
    raise ValueError(f"no singer named {name!r}")


def same_singers(a: list[str], b: list[str]) -> bool:
    """Two singer tables alike, name for name and row for row (compared as singer_name)."""
    return [singer_name(n) for n in a] == [singer_name(n) for n in b]


def speaker_map(names: list[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def names_from_map(spk_map: dict) -> list[str]:
    """The table as a list (row order) from {name: row}; raises ValueError when rows have gaps."""
    rows = sorted((int(i), str(n)) for n, i in spk_map.items())
    if [i for i, _ in rows] != list(range(len(rows))):
        raise ValueError(f"singer rows {[i for i, _ in rows]} are not 0..{len(rows) - 1}")
    return [n for _, n in rows]


# ------------------------------------------------------------------------------------------------
# --speaker NAME / --speaker "alto:0.7,tenor:0.3"


@dataclass(frozen=True)
class SpeakerChoice:
    """A singer or a blend: `weights` [n_singers] summing to 1 over the table `names`."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def parts(self) -> list[tuple[str, float]]:
        return [(n, w) for n, w in zip(self.names, self.weights) if w > 0]

    @property
    def label(self) -> str:
        """For file names: `alto`, or `alto70-tenor30` (percent) for a blend; never empty.

        Two different choices get two labels: a percentage keeps the digits it has (up to 6
        significant: 70.4 stays `70.4`, 70 is `70`), and a name that file_name_of makes alike to
        another singer's in the table (`a b`, `a_b`) carries a short hash of its own spelling."""
        parts = self.parts
        if not parts:
            raise ValueError("a singer choice needs a weight above 0")
        if len(parts) == 1:
            return file_name_of(parts[0][0], self.names)
        return "-".join(f"{file_name_of(n, self.names)}{percent_text(w)}" for n, w in parts)

    @property
    def text(self) -> str:
        parts = self.parts
        return parts[0][0] if len(parts) == 1 else ", ".join(f"{n} {w:.0%}" for n, w in parts)

    def tensor(self, batch: int = 1, device=None) -> torch.Tensor:
        """Blend weights [batch, n_singers] (float32)."""
        return torch.tensor(self.weights, dtype=torch.float32, device=device)[None].expand(batch, -1)


def safe_name(name: str) -> str:
    """A singer's name made safe inside a file name on every system (letters of any script kept,
    in NFC)."""
    cleaned = re.sub(r'[\\/:*?"<>|\s]+', "_", singer_name(name)).strip("._")
    return cleaned or "singer"


def file_name_of(name: str, table: tuple[str, ...] | list[str]) -> str:
    """safe_name(name), plus "-" and 6 hex digits of its NFC spelling (BLAKE2s) when another singer of
    `table` has the same safe_name (`a b` and `a_b`), so their outputs never share a file."""
    import hashlib

    mine = safe_name(name)
    if any(safe_name(other) == mine and singer_name(other) != singer_name(name) for other in table):
        return f"{mine}-{hashlib.blake2s(singer_name(name).encode('utf-8'), digest_size=3).hexdigest()}"
    return mine


def percent_text(weight: float) -> str:
    """A blend weight (0..1] as a percentage for a file name: the digits it has, up to 6 significant
    (0.7 -> "70", 0.704 -> "70.4", 1/3 -> "33.3333"); never "0" for a weight above 0."""
    text = f"{100 * weight:.6g}"
    return text if float(text) > 0 else f"{100 * weight:.1e}"


def parse_speaker(text: str | None, names: list[str]) -> SpeakerChoice | None:
    """`--speaker` against the model's table `names` ([] for a one-singer model).

    NAME picks a singer; "a:0.7,b:0.3" blends (weights >= 0, finite, not all 0; normalised to sum
    1; a name given twice adds up). None for a one-singer model without --speaker. Raises
    DiffSvcError, one line listing the singers, for a missing choice (several singers), an
    unknown name or a bad weight."""
    listed = ", ".join(names)
    if not names:
        if text is not None:
            raise DiffSvcError(f"--speaker {text!r}: this model has a single singer (no singer table); "
                               "leave out --speaker")
        return None
    if text is None or not text.strip():
        if len(names) == 1:
            return SpeakerChoice(tuple(names), (1.0,))
        raise DiffSvcError(f"this model sings as several singers; choose one with --speaker NAME or blend them "
                           f"with --speaker \"{names[0]}:0.5,{names[1]}:0.5\" (singers: {listed})")
    table = {singer_name(n): n for n in names}  # a name is found in whichever Unicode form it is typed
    weights = dict.fromkeys(names, 0.0)
    whole = singer_name(text.strip())
    if whole in table:  # a name alone (it may hold ':' or ',')
        weights[table[whole]] = 1.0
    for part in ([] if whole in table else text.split(",")):
        name, sep, value = part.rpartition(":") if ":" in part else (part, "", "")
        name = singer_name(name.strip())
        if name not in table:
            raise DiffSvcError(f"--speaker {text!r}: no singer named {name!r} in this model (singers: {listed})")
        w = 1.0
        if sep:
            try:
                w = float(value)
            except ValueError:
                w = math.nan
            if not math.isfinite(w) or w < 0:
                raise DiffSvcError(f"--speaker {text!r}: the weight of {name!r} must be a number >= 0, got "
                                   f"{value.strip()!r} (e.g. \"{names[0]}:0.7,{names[-1]}:0.3\"; singers: {listed})")
        weights[table[name]] += w
    if not all(math.isfinite(w) for w in weights.values()):  # a name given twice with a huge weight
        raise DiffSvcError(f"--speaker {text!r}: the weights are too large to add up; give them as shares such as "
                           f"\"{names[0]}:0.7,{names[-1]}:0.3\" (singers: {listed})")
    largest = max(weights.values())
    if not largest > 0:
        raise DiffSvcError(f"--speaker {text!r}: the weights add up to 0; give at least one singer a weight above 0 "
                           f"(singers: {listed})")
    scaled = {n: w / largest for n, w in weights.items()}  # in [0, 1] first: 1e308 + 1e308 overflows, 1 + 1 not
    total = sum(scaled.values())
    return SpeakerChoice(tuple(names), tuple(scaled[n] / total for n in names))


def blended_median_hz(choice: SpeakerChoice, medians: dict[str, float]) -> float:
    """The f0 median `--key auto` aims at for a singer or blend: the weighted mean of the singers'
    medians in log2 (semitone) space, i.e. their weighted geometric mean."""
    medians = {singer_name(n): v for n, v in medians.items()}
    missing = [n for n, _ in choice.parts if not medians.get(singer_name(n), 0) > 0]
    if missing:
        raise DiffSvcError(f"--key auto: no f0 statistics for singer {missing[0]!r}; give --key in semitones")
    return float(2 ** sum(w * math.log2(medians[singer_name(n)]) for n, w in choice.parts))
