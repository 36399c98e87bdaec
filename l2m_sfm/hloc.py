"""hloc plugin: ``confs`` presets in hloc's dense-matcher shape and a BaseModel matcher, registered on demand.

``confs["loftr"]`` / ``confs["loftr-indoor"]`` run LoFTR from the official checkpoint files through the same
model (``model.variant``: loftr | loftr-indoor; ``l2m_sfm.loftr_matcher``).

Usage with an installed hloc (never imported by l2m-sfm otherwise)::

    from l2m_sfm import hloc as l2m_hloc
    l2m_hloc.register()                       # creates the module hloc.matchers.l2m
    from hloc import match_dense
    match_dense.main(l2m_hloc.confs["l2m"], pairs, image_dir, export_dir=outputs)

Keypoint-anchored mode (no hloc import needed): after hloc's ``extract_features`` (any detector) and, optionally,
its ``match_features`` (the detector's own matches, for the pair gate and ``combine="union"``)::

    l2m_hloc.match_anchored(l2m_hloc.anchored_confs["l2m-anchored"], pairs, image_dir, features, matches,
                            matches_ref=sparse_matches)

writes hloc ``matches0`` between the detector's keypoints (``l2m_sfm.match_anchored`` describes the rule), ready
for ``hloc.reconstruction.main``. Images are read like hloc reads them (OpenCV, EXIF orientation ignored), so the
keypoints of hloc's features file line up.

``register()`` uses the sys.modules route (spec hloc_and_pycolmap.md A7): a module object named
``hloc.matchers.l2m`` holding exactly one BaseModel subclass whose ``__module__`` is that name (no ``Model``
alias, which would break hloc's exactly-one check in ``dynamic_load``).

Model contract (A3): input ``{"image0": (1,C,H,W), "image1": (1,C,H,W)}`` in [0, 1] (C = 1 is repeated to RGB;
use ``grayscale: False``); output float tensors without batch dimension ``keypoints0`` (N, 2), ``keypoints1``
(N, 2) in pixels of the preprocessed images, hloc convention (top-left pixel centre (0, 0)), and ``scores`` (N,).
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

MODULE_NAME = "hloc.matchers.l2m"

_preprocessing = {"grayscale": False, "resize_max": 1024, "dfactor": 8}
confs: dict[str, dict[str, Any]] = {
    # scalable defaults (like hloc's loftr_aachen): 2 px assignment radius, one keypoint per 8 px cell
    "l2m": {"output": "matches-l2m", "model": {"name": "l2m", "variant": "l2m-tiny"},
            "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
    "l2m-fast": {"output": "matches-l2m-fast", "model": {"name": "l2m", "variant": "l2m-tiny-fast"},
                 "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
    "l2m-vitb": {"output": "matches-l2m-vitb", "model": {"name": "l2m", "variant": "l2m-vitb"},
                 "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
    "l2m++": {"output": "matches-l2mpp", "model": {"name": "l2m", "variant": "l2m++"},
              "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
    # LoFTR from the official file in $L2M_HOME/checkpoints (or model.weights); never downloaded, unlike
    # hloc's own `loftr` conf, which asks kornia for pretrained weights
    "loftr": {"output": "matches-loftr-official", "model": {"name": "l2m", "variant": "loftr"},
              "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
    "loftr-indoor": {"output": "matches-loftr-indoor-official", "model": {"name": "l2m", "variant": "loftr-indoor"},
                     "preprocessing": dict(_preprocessing), "max_error": 2, "cell_size": 8},
}
# keypoint-anchored presets (match_anchored below): "anchored" holds l2m_sfm.match_anchored keys except anchors
anchored_confs: dict[str, dict[str, Any]] = {
    "l2m-anchored": {"output": "matches-l2m-anchored", "model": {"name": "l2m", "variant": "l2m-tiny"},
                     "anchored": {"radius_px": 2.0, "min_certainty": 0.05,
                                  "gate": {"min_agreement": 8, "agree_radius_px": 4.0, "min_area": 0.0}}},
}
LOFTR_VARIANTS = {"loftr": "outdoor", "loftr-indoor": "indoor"}  # model.variant -> l2m_sfm.loftr_matcher variant

model_default_conf: dict[str, Any] = {
    "variant": "l2m-tiny",
    "weights": None,
    "coarse_weights": None,
    "coarse_res": None,
    "upsample_res": None,  # None: variant default; 0: no second pass
    "keep_aspect": None,  # None: variant default
    "coarse_levels": None,  # None: variant default
    "upsample_levels": None,
    "cycle_px": None,  # None: variant default; 0: off
    "normalize": None,
    "num_samples": 5000,
    "sample_thresh": 0.05,
    "sampling": None,  # None: "balanced" | "reciprocal" (l2m.models.sampling.reciprocal_sample)
    "seed": 0,
    "max_num_matches": None,  # keep the top-k by certainty
    "match_thr": 0.2,  # LoFTR variants only: coarse dual-softmax threshold (official configs: 0.2)
}


def make_model_class(base: type, module_name: str = MODULE_NAME) -> type:
    """Build the L2M dense matcher as a subclass of hloc's BaseModel (passed in, so hloc stays optional)."""
    import torch

    class L2MDense(base):  # type: ignore[misc, valid-type]
        default_conf = dict(model_default_conf)
        required_inputs = ["image0", "image1"]

        def _init(self, conf: dict) -> None:
            from l2m.models.zoo import build_model

            from l2m_sfm.l2m_matcher import model_conf_of

            if conf["variant"] in LOFTR_VARIANTS:
                from l2m_sfm.loftr_matcher import load_network

                self.net = load_network(LOFTR_VARIANTS[conf["variant"]], conf["weights"], conf["match_thr"])
                return
            model_conf = model_conf_of(conf)
            self.net = build_model(conf["variant"], weights=conf["weights"], coarse_weights=conf["coarse_weights"],
                                   conf=model_conf)

        def _forward(self, data: dict) -> dict:
            im0, im1 = (im.expand(3, -1, -1) if im.shape[0] == 1 else im
                        for im in (data["image0"][0], data["image1"][0]))
            if self.conf["variant"] in LOFTR_VARIANTS:
                return self._forward_loftr(im0.float(), im1.float())
            out = self.net.match(im0.float(), im1.float())
            gen = torch.Generator().manual_seed(int(self.conf["seed"]))
            matches, scores = self.net.sample(out, generator=gen)
            (h0, w0), (h1, w1) = im0.shape[-2:], im1.shape[-2:]
            k0, k1 = self.net.to_pixel_coordinates(matches, h0, w0, h1, w1, hloc=True)
            k = self.conf.get("max_num_matches")
            if k is not None and len(scores) > k:
                top = torch.topk(scores, k).indices
                k0, k1, scores = k0[top], k1[top], scores[top]
            return {"keypoints0": k0.float(), "keypoints1": k1.float(), "scores": scores.float()}

        def _forward_loftr(self, im0: torch.Tensor, im1: torch.Tensor) -> dict:
            """RGB (3, H, W) -> LoFTR on grayscale (ITU-R 601 weights); kornia's keypoints are hloc pixels."""
            w = torch.tensor([0.299, 0.587, 0.114], device=im0.device)[:, None, None]
            gray = [(im * w).sum(0)[None, None] for im in (im0, im1)]
            out = self.net({"image0": gray[0], "image1": gray[1]})
            k0, k1, scores = out["keypoints0"], out["keypoints1"], out["confidence"]
            k = self.conf.get("max_num_matches")
            if k is not None and len(scores) > k:
                top = torch.topk(scores, k).indices
                k0, k1, scores = k0[top], k1[top], scores[top]
            return {"keypoints0": k0.float(), "keypoints1": k1.float(), "scores": scores.float()}

    L2MDense.__module__ = module_name
    L2MDense.__qualname__ = "L2MDense"
    return L2MDense


def _read_like_hloc(path: Path):
    """RGB uint8 as hloc reads images (OpenCV, EXIF orientation ignored)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def match_anchored(conf: dict[str, Any], pairs: Path, image_dir: Path, features: Path, matches: Path,
                   matches_ref: Path | None = None, overwrite: bool = False) -> Path:
    """hloc-style stage: L2M matches between the keypoints of an hloc features file -> hloc matches file.

    `matches_ref` (the detector's own hloc matches) enables the pair gate and ``combine="union"`` (the default
    then, as in reconstruct; set ``anchored.combine="none"`` for dense matches only); without it the gate is off
    and the matches are the dense ones. Pairs already in `matches` are skipped unless `overwrite`.
    """

    from l2m.config import ConfigError
    from l2m_sfm import h5io
    from l2m_sfm.match_anchored import gate_passes, resolve_conf, union_matches
    from l2m_sfm.matchers import get_matcher
    from l2m_sfm.pairs import parse_pairs

    # the reconstruct defaults (`anchors` is the features file here); union needs the detector's matches
    opts = resolve_conf({"combine": "union" if matches_ref is not None else "none", **conf.get("anchored", {})})
    if opts["combine"] == "union" and matches_ref is None:
        raise ConfigError("combine='union' needs matches_ref (the detector's own hloc matches)")
    model = dict(conf["model"])
    variant = model.pop("variant", "l2m-tiny")
    model.pop("name", None)
    matcher = get_matcher(variant, model)
    matches = Path(matches)
    if overwrite:
        matches.unlink(missing_ok=True)
    for n0, n1 in parse_pairs(Path(pairs)):
        if matches.exists() and h5io.has_pair(matches, n0, n1):
            continue
        k0, k1 = h5io.read_keypoints(features, n0), h5io.read_keypoints(features, n1)
        ref = h5io.read_matches(matches_ref, n0, n1) if matches_ref is not None else None
        out = matcher.anchor(_read_like_hloc(Path(image_dir) / n0), _read_like_hloc(Path(image_dir) / n1), k0, k1,
                             n0, n1, opts["radius_px"], opts["min_certainty"],
                             None if ref is None else (ref[0][:, 0], ref[0][:, 1]), opts["gate"]["agree_radius_px"])
        m, s = out["matches"], out["scores"]
        if ref is not None and not gate_passes(out, opts["gate"]):
            m, s = m[:0], s[:0]
        if opts["combine"] == "union":
            m, s, _ = union_matches(ref[0], ref[1], m, s)
        m0, s0 = h5io.matches_to_matches0(m, s, len(k0))
        h5io.write_matches(matches, n0, n1, m0, s0)
    return matches


def register() -> type:
    """Make ``confs["l2m*"]`` usable by an installed hloc: create and register ``hloc.matchers.l2m``."""
    try:
        import hloc.matchers as matchers
        from hloc.utils.base_model import BaseModel
    except ImportError as e:
        raise ImportError("l2m_sfm.hloc.register() needs hloc installed (github.com/cvg/Hierarchical-Localization; "
                          "it is not on PyPI). l2m-sfm itself does not need hloc.") from e
    existing = sys.modules.get(MODULE_NAME)
    if existing is not None and getattr(existing, "L2MDense", None) is not None:
        return existing.L2MDense
    module = types.ModuleType(MODULE_NAME, "L2M dense matcher (registered by l2m_sfm.hloc)")
    cls = make_model_class(BaseModel, MODULE_NAME)
    module.L2MDense = cls
    sys.modules[MODULE_NAME] = module
    matchers.l2m = module
    return cls
