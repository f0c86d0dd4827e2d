"""Content encoders: HuBERT-soft and ContentVec (fairseq) in their public file formats, windowing,
the MFCC stand-in, and bad input.

No real weights exist here, so models of the real architecture get random weights, are saved in the
original formats and loaded through the public path. torchaudio's wav2vec2 model (written and
checked against fairseq by its authors, with its own key importer) is the independent reference
for the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
import types
import typing
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffsvc.config import Config
from diffsvc.errors import AudioError, CheckpointError
from diffsvc.features.content import (
    ContentEncoder,
    StandinContentEncoder,
    contentvec_encoder,
    hubert_soft_encoder,
    load_content_encoder,
)
from diffsvc.features.content.fairseq_hubert import FairseqHubertConfig, build_fairseq_hubert, parse_conv_layers
from diffsvc.features.content.hubert_soft import Hubert, HubertSoft
from diffsvc.features.content.loading import (
    fairseq_to_hubert_keys,
    hubert_soft_state_dict,
    load_fairseq_hubert,
    restricted_torch_load,
)
from diffsvc.features.content.windowed import encode_windowed, window_plan

FIXTURES = Path("/work/shared/reference/fixtures")
if not FIXTURES.exists():
    FIXTURES = Path(__file__).resolve().parents[1] / "shared" / "reference" / "fixtures"

TINY_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2
TINY_CONV_TEXT = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"
TINY = dict(conv_layers=TINY_CONV, embed_dim=48, num_heads=4, ffn_dim=96, conv_pos=16, conv_pos_groups=4)
# A fairseq model config as found in ckpt['cfg']['model'] (with some training-only fields).
TINY_FAIRSEQ_CFG = {
    "_name": "hubert", "label_rate": 50, "extractor_mode": "default", "encoder_layers": 10,
    "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 96, "encoder_attention_heads": 4,
    "activation_fn": "gelu", "layer_type": "transformer", "dropout": 0.1, "final_dim": 24,
    "untie_final_proj": False, "layer_norm_first": False, "conv_feature_layers": TINY_CONV_TEXT,
    "conv_bias": False, "conv_pos": 16, "conv_pos_groups": 4, "mask_prob": 0.8,
    "required_seq_len_multiple": 2,
}
TINY_LABELS = 10


def speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Noise under a moving envelope plus a gliding tone: non-stationary, reproducible."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.3 + 0.25 * np.sin(2 * np.pi * 0.7 * t)
    return (rng.randn(t.size) * env * 0.3 + 0.3 * np.sin(2 * np.pi * (180 * t + 40 * t * t))).astype(np.float32)


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fresh LayerNorm/GroupNorm weights are 1 and 0; perturb them so a swapped key would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def tiny_hubert_soft(num_layers: int = 2, seed: int = 0) -> HubertSoft:
    torch.manual_seed(seed)
    return randomize_norms(HubertSoft(num_layers=num_layers, num_label_embeddings=7, **TINY), seed).eval()


# --------------------------------------------------------------------------------------------
# torchaudio as the reference implementation


def torchaudio_model(num_layers: int, layer_norm_first: bool = False, mode: str = "group_norm", conv_pos: int = 16):
    from torchaudio.models import wav2vec2_model

    return wav2vec2_model(
        extractor_mode=mode, extractor_conv_layer_config=TINY_CONV, extractor_conv_bias=False,
        encoder_embed_dim=48, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=conv_pos,
        encoder_pos_conv_groups=4, encoder_num_layers=num_layers, encoder_num_heads=4,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=96, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0, encoder_layer_norm_first=layer_norm_first, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()


def fairseq_state_dict(cfg: dict, label_rows: int, make) -> dict[str, torch.Tensor]:
    """A fairseq HubertModel state dict laid out as fairseq names it (conv_layers.i.0 conv,
    .0.2 GroupNorm, separate q/k/v...). `make(*shape)` makes each tensor."""
    sd = {"mask_emb": make(cfg["encoder_embed_dim"]), "label_embs_concat": make(label_rows, cfg["final_dim"])}
    in_ch = 1
    for i, (ch, k, _) in enumerate(parse_conv_layers(cfg["conv_feature_layers"])):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = make(ch, in_ch, k)
        if i == 0:
            sd["feature_extractor.conv_layers.0.2.weight"] = make(ch)
            sd["feature_extractor.conv_layers.0.2.bias"] = make(ch)
        in_ch = ch
    d, f = cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"]
    sd.update({"layer_norm.weight": make(in_ch), "layer_norm.bias": make(in_ch),
               "post_extract_proj.weight": make(d, in_ch), "post_extract_proj.bias": make(d),
               "encoder.pos_conv.0.bias": make(d), "encoder.pos_conv.0.weight_g": make(1, 1, cfg["conv_pos"]),
               "encoder.pos_conv.0.weight_v": make(d, d // cfg["conv_pos_groups"], cfg["conv_pos"])})
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd[p + f"self_attn.{name}.weight"], sd[p + f"self_attn.{name}.bias"] = make(d, d), make(d)
        sd[p + "self_attn_layer_norm.weight"], sd[p + "self_attn_layer_norm.bias"] = make(d), make(d)
        sd[p + "fc1.weight"], sd[p + "fc1.bias"] = make(f, d), make(f)
        sd[p + "fc2.weight"], sd[p + "fc2.bias"] = make(d, f), make(d)
        sd[p + "final_layer_norm.weight"], sd[p + "final_layer_norm.bias"] = make(d), make(d)
    sd.update({"encoder.layer_norm.weight": make(d), "encoder.layer_norm.bias": make(d),
               "final_proj.weight": make(cfg["final_dim"], d), "final_proj.bias": make(cfg["final_dim"])})
    return sd


def random_fairseq_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = fairseq_state_dict(TINY_FAIRSEQ_CFG, TINY_LABELS, lambda *s: 0.2 * torch.randn(*s, generator=g))
    for key in sd:  # norm scales and weight-norm gains near 1, like trained ones
        if "norm" in key and key.endswith("weight") or key.endswith("weight_g"):
            sd[key] = sd[key] + 1.0
    return sd


def torchaudio_contentvec_units(sd: dict, wav16: np.ndarray, output_layer: int) -> torch.Tensor:
    """Reference: torchaudio's own fairseq importer + extract_features, then final_proj."""
    from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

    ref = torchaudio_model(TINY_FAIRSEQ_CFG["encoder_layers"])
    ref.load_state_dict(_convert_state_dict(sd), strict=False)
    with torch.inference_mode():
        feats, _ = ref.extract_features(torch.from_numpy(wav16)[None], num_layers=output_layer)
        return F.linear(feats[-1], sd["final_proj.weight"], sd["final_proj.bias"])[0]


def ours_to_torchaudio_keys(state: dict) -> dict:
    """bshall/HuBERT-soft key names -> torchaudio's (test-side map, written independently)."""
    out = {}
    layer_map = {"self_attn.out_proj": "attention.out_proj", "linear1": "feed_forward.intermediate_dense",
                 "linear2": "feed_forward.output_dense", "norm1": "layer_norm", "norm2": "final_layer_norm"}
    for k, v in state.items():
        if k in ("masked_spec_embed", "label_embedding.weight") or k.startswith("proj."):
            continue
        if m := re.fullmatch(r"feature_extractor\.conv(\d+)\.weight", k):
            out[f"feature_extractor.conv_layers.{m[1]}.conv.weight"] = v
        elif m := re.fullmatch(r"feature_extractor\.norm(\d+)\.(weight|bias)", k):
            out[f"feature_extractor.conv_layers.{m[1]}.layer_norm.{m[2]}"] = v
        elif m := re.fullmatch(r"feature_projection\.(norm|projection)\.(weight|bias)", k):
            out[f"encoder.feature_projection.{'layer_norm' if m[1] == 'norm' else 'projection'}.{m[2]}"] = v
        elif m := re.fullmatch(r"positional_embedding\.conv\.(bias|weight_g|weight_v)", k):
            name = {"bias": "bias", "weight_g": "parametrizations.weight.original0",
                    "weight_v": "parametrizations.weight.original1"}[m[1]]
            out[f"encoder.transformer.pos_conv_embed.conv.{name}"] = v
        elif m := re.fullmatch(r"norm\.(weight|bias)", k):
            out[f"encoder.transformer.layer_norm.{m[1]}"] = v
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", k):
            for name, part in zip("qkv", v.chunk(3)):
                out[f"encoder.transformer.layers.{m[1]}.attention.{name}_proj.{m[2]}"] = part
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", k):
            out[f"encoder.transformer.layers.{m[1]}.{layer_map[m[2]]}.{m[3]}"] = v
        else:
            raise AssertionError(f"unmapped key {k}")
    return out


# --------------------------------------------------------------------------------------------
# Architecture and keys


def test_hubert_soft_key_set_and_shapes_equal_v01_release():
    fixture = json.loads((FIXTURES / "hubert_soft_keys.json").read_text())
    with torch.device("meta"):
        model = HubertSoft()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == fixture["state_dict_shapes_v0.1"]
    assert sum(p.numel() for p in model.parameters()) == fixture["num_params_total"] == 94_594_176
    assert (model.receptive_field, model.frame_stride, model.input_padding) == (400, 320, 40)


def test_fairseq_key_map_covers_contentvec_layout_exactly():
    fixture = json.loads((FIXTURES / "contentvec_fairseq_keys.json").read_text())
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    fairseq_shapes = {k: list(v) for k, v in fixture["state_dict_shapes"].items()}
    # Our test-side fairseq layout generator is itself checked against the fixture.
    generated = fairseq_state_dict(fixture["config_used"], fixture["dictionary_size"], meta)
    assert {k: list(v.shape) for k, v in generated.items()} == fairseq_shapes
    config = FairseqHubertConfig.from_mapping(fixture["config_used"], "fixture")
    with torch.device("meta"):
        model = build_fairseq_hubert(config, fixture["dictionary_size"])
    mapped = fairseq_to_hubert_keys({k: torch.empty(v, device="meta") for k, v in fairseq_shapes.items()})
    assert {k: list(v.shape) for k, v in mapped.items()} == {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == fixture["num_params_total"]


def test_conv_layer_text_is_parsed_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == [
        (512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(CheckpointError, match="conv_feature_layers"):
        parse_conv_layers("__import__('os').system('true')")


@pytest.mark.parametrize("layer_norm_first,mode", [(False, "group_norm"), (True, "layer_norm")])
def test_hubert_matches_torchaudio_wav2vec2(layer_norm_first, mode):
    torch.manual_seed(0)
    ours = randomize_norms(Hubert(num_layers=3, extractor_mode=mode, layer_norm_first=layer_norm_first,
                                  proj_dim=16, num_label_embeddings=3, **TINY)).eval()
    ref = torchaudio_model(3, layer_norm_first, mode)
    ref.load_state_dict(ours_to_torchaudio_keys(ours.state_dict()), strict=True)
    wav = torch.from_numpy(speechlike(1.0, 16000))[None]
    with torch.inference_mode():
        per_layer, _ = ref.extract_features(wav)
        for n in (1, 2, 3):
            torch.testing.assert_close(ours.encode(wav, output_layer=n), per_layer[n - 1], rtol=1e-4, atol=1e-5)
        full, _ = ref(wav)  # all layers (+ the final norm of a pre-LN encoder)
        torch.testing.assert_close(ours.encode(wav), full, rtol=1e-4, atol=1e-5)


def test_hubert_soft_units_frame_count_is_floor_n_over_320():
    model = tiny_hubert_soft()
    for n in (320, 639, 640, 16000, 16001, 22050):
        units = model.units(torch.zeros(1, n).uniform_(-0.5, 0.5))
        assert units.shape == (1, n // 320, 256)


# --------------------------------------------------------------------------------------------
# HuBERT-soft files


def test_hubert_soft_full_size_file_loads_through_public_path(tmp_path):
    torch.manual_seed(3)
    model = randomize_norms(HubertSoft()).eval()
    # v0.1 layout: a flat state dict; DataParallel's "module." prefix must be stripped.
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "hubert-soft-0d54a1f4.pt")
    # The configured name is absent: the public name in the same folder is used.
    config = Config(hubert_path=str(tmp_path / "hubert_soft.pt"))
    encoder = load_content_encoder(config)
    assert (encoder.name, encoder.dim, encoder.frame_rate, encoder.is_standin) == ("hubert-soft", 256, 50.0, False)
    wav44 = speechlike(1.0, 44100)
    units = encoder.encode(wav44, 44100)
    wav16 = librosa.resample(wav44, orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    expected = model.units(torch.from_numpy(wav16)[None])[0]
    assert units.dtype == torch.float32 and units.device.type == "cpu"
    assert units.shape == (len(wav16) // 320, 256) == (50, 256)
    torch.testing.assert_close(units, expected, rtol=1e-4, atol=1e-5)


def test_hubert_soft_state_dict_variants_map_to_v01_keys():
    state = {"proj.weight": torch.zeros(2, 2), "positional_embedding.conv.weight_g": torch.ones(1)}
    head = {"module.proj.weight": torch.zeros(2, 2),
            "module.positional_embedding.conv.parametrizations.weight.original0": torch.ones(1)}
    assert hubert_soft_state_dict(state, "a").keys() == state.keys()
    assert hubert_soft_state_dict({"hubert": head, "step": 5}, "b").keys() == state.keys()  # v0.2 nesting
    with pytest.raises(CheckpointError, match="not a HuBERT-soft file"):
        hubert_soft_state_dict({"weights": [1, 2]}, "c")


def test_hubert_soft_wrong_files_give_one_line_errors(tmp_path):
    torch.save(tiny_hubert_soft(num_layers=2).state_dict(), tmp_path / "short.pt")  # 10 layers missing
    with pytest.raises(CheckpointError, match=r"short\.pt: keys do not match .*120 missing"):
        load_content_encoder(Config(hubert_path=str(tmp_path / "short.pt")))
    torch.save(tiny_hubert_soft(num_layers=12).state_dict(), tmp_path / "tiny.pt")  # right names, wrong sizes
    with pytest.raises(CheckpointError, match=r"tiny\.pt: .* has shape"):
        load_content_encoder(Config(hubert_path=str(tmp_path / "tiny.pt")))
    sd = random_fairseq_state_dict()
    torch.save(sd, tmp_path / "vec.pt")
    with pytest.raises(CheckpointError, match="content_encoder: contentvec"):
        load_content_encoder(Config(hubert_path=str(tmp_path / "vec.pt")))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "tiny.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        load_content_encoder(Config(hubert_path=str(tmp_path / "cut.pt")))


def test_missing_weights_name_the_file_or_give_the_standin(tmp_path):
    config = Config(hubert_path=str(tmp_path / "models" / "hubert_soft.pt"))
    with pytest.raises(CheckpointError) as err:
        load_content_encoder(config)
    message = str(err.value)
    assert str(tmp_path / "models" / "hubert_soft.pt") in message and "hubert-soft-0d54a1f4.pt" in message
    assert "\n" not in message
    vec = Config(content_encoder="contentvec", contentvec_path=str(tmp_path / "vec" / "cv.pt"))
    with pytest.raises(CheckpointError, match=r"cv\.pt.*checkpoint_best_legacy_500\.pt"):
        load_content_encoder(vec)
    standin = load_content_encoder(config, allow_standin=True)
    assert isinstance(standin, StandinContentEncoder) and standin.is_standin
    assert standin.name == "stand-in (MFCC, not HuBERT)"


# --------------------------------------------------------------------------------------------
# ContentVec / fairseq files


def _check_contentvec_file(path: Path, sd: dict) -> None:
    config = Config(content_encoder="contentvec", contentvec_path=str(path))
    encoder = load_content_encoder(config)
    assert encoder.name == "contentvec" and encoder.dim == TINY_FAIRSEQ_CFG["final_dim"]
    wav = speechlike(1.0, 16000, seed=2)
    units = encoder.encode(wav, 16000)
    # No padding for ContentVec: floor((N - 400) / 320) + 1 frames.
    assert units.shape == ((len(wav) - 400) // 320 + 1, 24)
    torch.testing.assert_close(units, torchaudio_contentvec_units(sd, wav, 9), rtol=1e-4, atol=1e-5)


def test_contentvec_cfg_checkpoint_matches_torchaudio_reference_at_layer_9(tmp_path):
    sd = random_fairseq_state_dict()
    ckpt = {"args": None, "cfg": {"_name": None, "model": TINY_FAIRSEQ_CFG, "task": {"labels": ["km"]}},
            "model": sd, "optimizer_history": [{"num_updates": 100}], "extra_state": {"epoch": 3}}
    torch.save(ckpt, tmp_path / "checkpoint_best_legacy_500.pt")
    _check_contentvec_file(tmp_path / "checkpoint_best_legacy_500.pt", sd)
    # Layer 9 really is layers[:9]: it differs from the neighbouring layers' outputs.
    model, config = load_fairseq_hubert(tmp_path / "checkpoint_best_legacy_500.pt")
    assert config.encoder_layers == 10 and config.proj_dim == 24
    wav = torch.from_numpy(speechlike(1.0, 16000, seed=2))[None]
    with torch.inference_mode():
        assert not torch.allclose(model.encode(wav, 8), model.encode(wav, 9), atol=1e-3)


def test_contentvec_legacy_args_namespace_checkpoint(tmp_path):
    sd = random_fairseq_state_dict(seed=5)
    ckpt = {"args": argparse.Namespace(**TINY_FAIRSEQ_CFG, lr=[0.0005]), "model": sd}
    torch.save(ckpt, tmp_path / "legacy.pt")
    with pytest.raises(pickle.UnpicklingError):  # what safe_torch_load's weights_only path refuses
        torch.load(tmp_path / "legacy.pt", weights_only=True)
    _check_contentvec_file(tmp_path / "legacy.pt", sd)
    # torch's pre-1.6 (non-zip) container too
    torch.save(ckpt, tmp_path / "old_torch.pt", _use_new_zipfile_serialization=False)
    old = restricted_torch_load(tmp_path / "old_torch.pt")
    assert vars(old["args"]) == vars(ckpt["args"]) and all(torch.equal(old["model"][k], v) for k, v in sd.items())
    # Put where HuBERT-soft belongs, it is recognised rather than refused as unsafe.
    with pytest.raises(CheckpointError, match=r"legacy\.pt: this is a fairseq .*content_encoder: contentvec"):
        load_content_encoder(Config(hubert_path=str(tmp_path / "legacy.pt")))


def _fake_omegaconf_modules(monkeypatch):
    """Classes with omegaconf's and fairseq's module paths that pickle like omegaconf 2.x does
    (NEWOBJ + BUILD of __dict__: _metadata, _parent, _content / _val), for writing a test file
    without omegaconf installed. Checked by hand against omegaconf 2.4's own pickles."""
    made = {}

    def define(module, name, body=None):
        cls = type(name, (), dict(body or {}))
        cls.__module__, cls.__qualname__ = module, name
        for i in range(1, module.count(".") + 2):
            part = ".".join(module.split(".")[:i])
            monkeypatch.setitem(sys.modules, part, sys.modules.get(part) if part in made else types.ModuleType(part))
            made[part] = True
        setattr(sys.modules[module], name, cls)
        return cls

    ns = types.SimpleNamespace(
        DictConfig=define("omegaconf.dictconfig", "DictConfig"),
        ListConfig=define("omegaconf.listconfig", "ListConfig"),
        ContainerMetadata=define("omegaconf.base", "ContainerMetadata"),
        Metadata=define("omegaconf.base", "Metadata"),
        AnyNode=define("omegaconf.nodes", "AnyNode"),
        StringNode=define("omegaconf.nodes", "StringNode"),
        IntegerNode=define("omegaconf.nodes", "IntegerNode"),
        BooleanNode=define("omegaconf.nodes", "BooleanNode"),
        EnumNode=define("omegaconf.nodes", "EnumNode"),
        HubertConfig=define("fairseq.models.hubert.hubert", "HubertConfig"),
    )
    ns.Choices = define("fairseq.dataclass.constants", "Choices",
                        {"__init__": lambda self, value: setattr(self, "value", value),
                         "__reduce__": lambda self: (type(self), (self.value,))})
    return ns


def _dictconfig(fake, values: dict, object_type=dict, parent=None):
    def metadata(cls, **extra):
        m = cls.__new__(cls)
        m.__dict__.update(ref_type=typing.Any, object_type=object_type, optional=True, key=None,
                          flags={}, flags_root=False, resolver_cache={}, **extra)
        return m

    node = fake.DictConfig.__new__(fake.DictConfig)
    content = {}
    for key, value in values.items():
        if isinstance(value, dict):
            content[key] = _dictconfig(fake, value, fake.HubertConfig, node)
            continue
        if isinstance(value, fake.Choices):
            cls = fake.EnumNode
        else:
            cls = {bool: fake.BooleanNode, int: fake.IntegerNode, str: fake.StringNode}.get(type(value), fake.AnyNode)
        leaf = cls.__new__(cls)
        leaf.__dict__.update(_metadata=metadata(fake.Metadata), _parent=node, _val=value)
        content[key] = leaf
    node.__dict__.update(_metadata=metadata(fake.ContainerMetadata, key_type=typing.Any, element_type=typing.Any),
                         _parent=parent, _content=content)
    return node


def test_contentvec_omegaconf_checkpoint_without_omegaconf(tmp_path, monkeypatch):
    sd = random_fairseq_state_dict(seed=7)
    with monkeypatch.context() as patch:
        fake = _fake_omegaconf_modules(patch)
        model_cfg = dict(TINY_FAIRSEQ_CFG, extractor_mode=fake.Choices("default"),
                         label_rate="${task.label_rate}")
        cfg = _dictconfig(fake, {"model": model_cfg, "task": {"label_rate": 50}})
        torch.save({"args": None, "cfg": cfg, "model": sd}, tmp_path / "omegaconf.pt")
    assert "omegaconf" not in sys.modules or not hasattr(sys.modules["omegaconf"], "dictconfig")
    _check_contentvec_file(tmp_path / "omegaconf.pt", sd)


class _RunsCode:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickles_that_run_code_are_refused(tmp_path):
    target = tmp_path / "created_by_pickle"
    for name, payload in [
        ("mkdir.pt", {"cfg": {"model": TINY_FAIRSEQ_CFG}, "model": {"x": torch.zeros(1)}, "evil": _RunsCode(str(target))}),
        ("eval.pt", {"model": {}, "args": _Eval()}),
    ]:
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{re.escape(name)}: refused .*(mkdir|eval)"):
            restricted_torch_load(tmp_path / name)
        with pytest.raises(CheckpointError, match="refused"):
            load_content_encoder(Config(content_encoder="contentvec", contentvec_path=str(tmp_path / name)))
    assert not target.exists()


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_fairseq_files_we_cannot_build_are_refused_clearly(tmp_path):
    sd = random_fairseq_state_dict()
    cases = {
        "conformer.pt": ({"cfg": {"model": dict(TINY_FAIRSEQ_CFG, layer_type="conformer")}, "model": sd}, "conformer"),
        "untied.pt": ({"cfg": {"model": dict(TINY_FAIRSEQ_CFG, untie_final_proj=True)}, "model": sd}, "untie"),
        "extra.pt": ({"cfg": {"model": TINY_FAIRSEQ_CFG}, "model": dict(sd, **{"spk_proj.weight": torch.zeros(2)})},
                     "spk_proj"),
        "noconfig.pt": ({"model": sd}, "model config"),
        "plain.pt": (sd, "not a fairseq checkpoint"),
    }
    for name, (payload, why) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{re.escape(name)}: .*{why}"):
            load_fairseq_hubert(tmp_path / name)


# --------------------------------------------------------------------------------------------
# Audio input


@pytest.fixture(scope="module")
def encoder():
    return hubert_soft_encoder(tiny_hubert_soft())


def test_bad_audio_gives_one_clear_audio_error(encoder):
    cases = [
        (np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), 16000, "NaN"),
        (np.array([0.1, np.inf] * 1000), 16000, "NaN or infinite"),
        (np.zeros(0, dtype=np.float32), 16000, "empty"),
        (np.zeros(100, dtype=np.float32), 16000, "too short"),  # < one 20 ms frame
        (np.zeros(3, dtype=np.float32), 44100, "too short"),
        (np.zeros((2, 3, 1000), dtype=np.float32), 16000, "channels"),
        (np.zeros((20, 20000), dtype=np.float32), 16000, "channels"),
        (np.array(["a"] * 1000), 16000, "numbers"),
        (np.zeros(16000, dtype=np.float32), 0, "sample rate"),
        (np.zeros(16000, dtype=np.float32), 44100.5, "sample rate"),
        (np.zeros(16000, dtype=np.float32), float("nan"), "sample rate"),
    ]
    for wav, sr, why in cases:
        with pytest.raises(AudioError, match=why) as err:
            encoder.encode(wav, sr, source="song.wav")
        assert str(err.value).startswith("song.wav: ") and "\n" not in str(err.value)
    # The shortest input that gives a frame is 320 samples at 16 kHz (20 ms).
    assert encoder.min_samples_at_16k() == 320 and encoder.encode(np.zeros(320), 16000).shape == (1, 256)


def test_stereo_is_mixed_to_mono_either_way_round(encoder):
    left, right = speechlike(0.5, 16000, 1), speechlike(0.5, 16000, 2)
    mono = encoder.encode((left + right) / 2, 16000)
    torch.testing.assert_close(encoder.encode(np.stack([left, right]), 16000), mono)
    torch.testing.assert_close(encoder.encode(np.stack([left, right], axis=1), 16000), mono)
    torch.testing.assert_close(encoder.encode(torch.from_numpy(np.stack([left, right])), 16000), mono)


def test_integer_pcm_and_float_input_agree(encoder):
    wav = speechlike(0.5, 16000)
    pcm = np.round(wav * 32768).clip(-32768, 32767).astype(np.int16)
    torch.testing.assert_close(encoder.encode(pcm, 16000), encoder.encode(pcm / 32768.0, 16000))


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 192000])
def test_any_sample_rate_gives_50_frames_per_second(encoder, sr):
    wav = speechlike(1.3, sr)
    units = encoder.encode(wav, sr)
    n16 = len(librosa.resample(wav, orig_sr=sr, target_sr=16000, res_type="soxr_hq"))
    assert units.shape == (n16 // 320, 256) == (encoder.num_frames(len(wav), sr), 256)
    assert abs(units.shape[0] - 1.3 * 50) <= 1 and torch.isfinite(units).all()


def test_silence_gives_finite_units(encoder):
    units = encoder.encode(np.zeros(16000, dtype=np.float32), 16000)
    assert units.shape == (50, 256) and torch.isfinite(units).all()


def test_contentvec_22050_quirk_is_an_option(encoder):
    wav = speechlike(1.0, 44100)
    quirk = hubert_soft_encoder(encoder.model, legacy_22050=True)
    twice = librosa.resample(librosa.resample(wav, orig_sr=44100, target_sr=22050, res_type="soxr_hq"),
                             orig_sr=22050, target_sr=16000, res_type="soxr_hq")
    expected = encoder.encode(twice, 16000)
    got = quirk.encode(wav, 44100)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, encoder.encode(wav, 44100), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Long inputs


def test_window_plan_tiles_the_input_with_bounded_windows():
    for total in (1, 99, 100, 101, 1234, 5000):
        plan = window_plan(total, window_frames=100, context_frames=20)
        kept = [i for _, _, a, b in plan for i in range(a, b)]
        assert kept == list(range(total))
        for start, end, keep_start, keep_end in plan:
            assert 0 <= start <= keep_start < keep_end <= end <= total and end - start <= 100
            # every kept frame has the full context inside its window, unless the input ends first
            assert keep_start - start >= min(20, keep_start) and end - keep_end >= min(20, total - keep_end)


def test_windowed_equals_single_pass_without_attention():
    """With no attention layers everything is local except the first GroupNorm, whose whole-input
    statistics the windows share: the windowed result must equal the single pass everywhere."""
    model = tiny_hubert_soft(num_layers=0)
    wav = F.pad(torch.from_numpy(speechlike(8.0, 16000)), (40, 40))
    with torch.inference_mode():
        full = model.proj(model.encode(wav[None]))[0]
        windowed = encode_windowed(model, wav, window_frames=60, context_frames=model.positional_embedding.half_width)
    assert windowed.shape == full.shape == (400, 256)
    torch.testing.assert_close(windowed, full, rtol=1e-5, atol=1e-5)


def test_windowed_with_attention_is_close_and_memory_is_bounded(monkeypatch):
    """Attention sees only the window, so equality is approximate. With random weights attention
    is nearly uniform over the window (the worst case: nothing is local), and the measured worst
    frame error is 5-12% of the units' standard deviation for contexts of 10-80 frames; the bound
    below leaves margin. Real HuBERT attention is mostly local, so its error is expected lower."""
    model = tiny_hubert_soft(num_layers=2)
    wav = F.pad(torch.from_numpy(speechlike(12.0, 16000)), (40, 40))
    lengths = []
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda x, *a: lengths.append(x.shape[-1]) or original(x, *a))
    with torch.inference_mode():
        windowed = encode_windowed(model, wav, window_frames=120, context_frames=20)
        monkeypatch.setattr(model, "encode", original)
        full = model.proj(model.encode(wav[None]))[0]
    assert windowed.shape == full.shape == (600, 256)
    assert len(lengths) == 8 and max(lengths) == 119 * 320 + 400  # no window beyond 120 frames
    error = (windowed - full).abs().max() / full.std()
    assert error < 0.25


def test_short_input_takes_the_single_pass_exactly(encoder):
    wav = speechlike(2.0, 16000)
    expected = encoder.model.units(torch.from_numpy(wav)[None])[0]
    assert torch.equal(encoder.encode(wav, 16000), expected)


# --------------------------------------------------------------------------------------------
# Stand-in


def test_standin_is_deterministic_256d_at_50_fps_and_ignores_gain():
    standin = StandinContentEncoder()
    assert isinstance(standin, ContentEncoder) and standin.is_standin and standin.frame_rate == 50.0
    wav = speechlike(2.0, 16000)
    units = standin.encode(wav, 16000)
    assert units.shape == (len(wav) // 320, 256) and units.dtype == torch.float32
    assert torch.equal(units, StandinContentEncoder().encode(wav, 16000))
    quieter = standin.encode(wav * 0.1, 16000)
    other = standin.encode(speechlike(2.0, 16000, seed=9)[::-1].copy(), 16000)
    gain_change = (quieter - units).abs().mean()
    content_change = (other - units).abs().mean()
    assert gain_change < 1e-3 * content_change  # a gain only moves the dropped level coefficient
    assert 0.05 < units[:, :128].std() < 5  # about unit scale
    assert standin.encode(np.zeros(16000), 16000).abs().max() < 1e-5  # silence: a flat spectrum
    assert standin.to("cpu") is standin
    with pytest.raises(AudioError, match="too short"):
        standin.encode(np.zeros(100), 16000)


def test_contentvec_encoder_needs_enough_layers():
    with torch.device("meta"):
        model = Hubert(num_layers=4, **TINY)
    with pytest.raises(ValueError, match="output_layer 9"):
        contentvec_encoder(model)


def test_standin_removes_a_voices_fixed_colouring_but_keeps_what_changes():
    """Cepstral mean normalisation: a fixed filter (a brighter or darker voice, a different
    microphone) adds the same offset to every frame's cepstrum, and the stand-in subtracts the
    mean over the loud frames, so the units barely move; a change of content still moves them.
    Without the normalisation the brightened copy moves the units as much as other content does."""
    import scipy.signal

    standin = StandinContentEncoder()
    wav = speechlike(3.0, 16000)
    brighter = scipy.signal.lfilter([1.0, -0.9], [1.0], wav).astype(np.float32)  # pre-emphasis: +tilt
    other = speechlike(3.0, 16000, seed=9)[::-1].copy()
    units, units_bright, units_other = (standin.encode(w, 16000)[:, :24] for w in (wav, brighter, other))
    colour_change = (units_bright - units).abs().mean()
    content_change = (units_other - units).abs().mean()
    assert colour_change < 0.25 * content_change
    loud = units.abs().sum(1) > 0  # the mean over the loud frames is zero
    assert units[loud].mean(0).abs().max() < 0.2 * units[loud].std()


def test_standin_revision_is_part_of_the_units_cache_key():
    from diffsvc.data.preprocess import units_key

    before = {"encoder": "stand-in", "is_standin": True}
    assert units_key("abc", before) != units_key("abc", {**before, "revision": StandinContentEncoder.revision})
    assert units_key("abc", {"encoder": "hubert-soft", "is_standin": False}) == units_key(
        "abc", {"encoder": "hubert-soft", "is_standin": False, "revision": None})  # others' caches stay valid
