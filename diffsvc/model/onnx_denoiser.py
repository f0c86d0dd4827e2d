"""A denoiser backbone's forward in ONNX Runtime (fp32), called as the backbone is.

    denoiser = OnnxDenoiser(backbone)          # torch.onnx.export in memory, then an ORT session
    eps = denoiser(spec [B,1,M,T], t [B] long, cond [B,H,T], mask [B,1,T] or None, cond_proj=...)

Used by `GaussianDiffusion.sample(denoiser=...)` when `cpu_runtime` runs the denoiser in ONNX
Runtime (diffsvc.cpu_runtime). Batch and frames are free (dynamic axes). A backbone that offers
`project_condition` (DiffNet: each layer's conditioner projection, the same at every sampling
step) gets it computed once per sampling run, in torch, and handed to the session as one stacked
tensor [L,B,2C,T]; other backbones get `cond`. `mask` None runs as an all-ones mask (the same
numbers: the mask only multiplies). The session holds a copy of the weights taken when it was
built; `onnx_denoiser(backbone)` keeps one per backbone and builds it again when the weights
changed (in place, as load_state_dict does, or through `.data`: weights_fingerprint) or torch's
thread count did.

The numbers equal torch fp32's within float rounding (ONNX Runtime sums in another order):
checked on building, against torch on a small batch, and ValueError when they differ by more than
TOLERANCE of the output's scale; a backbone that does not export raises the exporter's error. The
caller (SongConverter) then goes on with the torch backbone after one log line.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch

from diffsvc.cpu_runtime import OnnxModule

# relative to the output's peak: float rounding is ~1e-7 (measured 6e-8 absolute on DiffNet
# 384 x 20, peak 0.07); a wrong graph misses it by orders of magnitude
TOLERANCE = 1e-4


class _Traced(torch.nn.Module):
    """backbone.forward with every input a tensor (what the exporter traces)."""

    def __init__(self, backbone: torch.nn.Module, projects: bool):
        super().__init__()
        self.backbone, self.projects = backbone, projects

    def forward(self, spec, t, cond_or_proj, mask):
        if self.projects:
            return self.backbone(spec, t, None, mask, cond_proj=list(cond_or_proj.unbind(0)))
        return self.backbone(spec, t, cond_or_proj, mask)


class OnnxDenoiser:
    """`backbone` (any registered one, in eval mode, on the CPU) as an ONNX Runtime session.

    Errors on building: ImportError without onnxruntime/onnx, the exporter's error for a backbone
    it cannot export, ValueError when the session's numbers differ from torch's (see the module doc)."""

    def __init__(self, backbone: torch.nn.Module, *, check_frames: int = 37):
        self._backbone = weakref.ref(backbone)  # weak: onnx_denoiser keeps this object per backbone
        self.projects = callable(getattr(backbone, "project_condition", None))
        b, t_frames = 2, check_frames
        spec = torch.randn(b, 1, backbone.in_dims, t_frames, generator=torch.Generator().manual_seed(0))
        cond = torch.randn(b, backbone.cond_dims, t_frames, generator=torch.Generator().manual_seed(1))
        steps = torch.tensor([1, 500], dtype=torch.long)[:b]
        mask = torch.ones(b, 1, t_frames)
        mask[1, :, t_frames - 5:] = 0  # a padded item: the mask is an input, not a constant
        with torch.no_grad():
            third = self._project(cond) if self.projects else cond
        third_name = "cond_proj" if self.projects else "cond"
        third_axes = {1: "batch", 3: "frames"} if self.projects else {0: "batch", 2: "frames"}
        # traced on a shorter example than checked on, so the check also tries the free axes
        n = max(t_frames // 2, 1)
        example = (spec[:1, ..., :n], steps[:1], third[:, :1, :, :n] if self.projects else third[:1, :, :n],
                   mask[:1, :, :n])
        self.session = OnnxModule(
            _Traced(backbone, self.projects).eval(), example,
            input_names=("spec", "t", third_name, "mask"), output_names=("eps",),
            dynamic_axes={"spec": {0: "batch", 3: "frames"}, "t": {0: "batch"}, third_name: third_axes,
                          "mask": {0: "batch", 2: "frames"}, "eps": {0: "batch", 3: "frames"}})
        with torch.no_grad():
            reference = backbone(spec, steps, cond, mask)
        got = self(spec, steps, cond, mask, cond_proj=third if self.projects else None)
        scale = float(reference.abs().max()) or 1.0
        error = float((got - reference).abs().max()) if got.shape == reference.shape else float("inf")
        if not error <= TOLERANCE * scale:
            raise ValueError(f"ONNX Runtime's output differs from torch's by {error:.3g} (scale {scale:.3g})")

    @property
    def backbone(self) -> torch.nn.Module:
        return self._backbone()

    @property
    def project_condition(self):
        """GaussianDiffusion.sample looks for it: offered only when the backbone has it (a property,
        not an attribute holding the bound method: that would be a reference cycle keeping the
        session, and its copy of the weights, alive until a garbage-collection pass)."""
        return self._project if self.projects else None

    @property
    def in_dims(self) -> int:
        return self.backbone.in_dims

    def _project(self, cond: torch.Tensor) -> torch.Tensor:
        """`project_condition`: the backbone's per-layer conditioner projections of cond [B,H,T],
        stacked [L,B,2C,T] (computed once per sampling run; passed back as `cond_proj`)."""
        return torch.stack(self.backbone.project_condition(cond))

    def __call__(self, spec: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                 cond_proj: torch.Tensor | Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if mask is None:
            mask = spec.new_ones(spec.shape[0], 1, spec.shape[-1])
        if self.projects:
            if cond_proj is None:
                cond_proj = self._project(cond)
            elif not torch.is_tensor(cond_proj):
                cond_proj = torch.stack(list(cond_proj))
            third = cond_proj
        else:
            third = cond
        out = self.session(spec.float(), t.long(), third.float(), mask.float())
        return out.to(spec.device)


@torch.no_grad()
def weights_fingerprint(module: torch.nn.Module) -> tuple:
    """What identifies the weights a session copied: each parameter's and buffer's identity, storage
    and content (its sum and sum of squares, float64). Content, not torch's version counter: weights
    written through `.data` do not count a version, and tensors made under inference_mode have
    none. One pass over the weights (about 10 ms at 384 x 20)."""
    tensors = [*module.parameters(), *module.buffers()]
    sums = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors]) \
        if tensors else torch.zeros(0)
    return (tuple((id(t), t.data_ptr(), tuple(t.shape)) for t in tensors), tuple(sums.flatten().tolist()))


_BUILT: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, OnnxDenoiser]]" = weakref.WeakKeyDictionary()


def onnx_denoiser(backbone: torch.nn.Module) -> OnnxDenoiser:
    """The OnnxDenoiser of `backbone`, built once (export ~2 s for DiffNet 384 x 20) and kept while
    the backbone lives, its weights unchanged and torch's thread count the same: every
    SongConverter of one loaded model shares it. Errors as OnnxDenoiser."""
    key = (torch.get_num_threads(), weights_fingerprint(backbone))
    kept = _BUILT.get(backbone)
    if kept is not None and kept[0] == key:
        return kept[1]
    denoiser = OnnxDenoiser(backbone)
    _BUILT[backbone] = (key, denoiser)
    return denoiser
