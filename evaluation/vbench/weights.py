"""Preflight for VBench-1.0 (vbench 0.1.5): every weight file each dimension loads, with where it comes from.

vbench fetches missing weights itself with wget / git / torch.hub deep inside a run, which fails offline with
errors that do not name the file. We check every file under `$VBENCH_CACHE_DIR` (`vbench.cache_dir`) before
vbench is imported and run only the dimensions whose files are all present; the others are reported missing with
the list of files and their sources. Paths and sources are those of vbench 0.1.5's `init_submodules` and
dimension modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUALITY_DIMS: tuple[str, ...] = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
SEMANTIC_DIMS: tuple[str, ...] = (
    "object_class",
    "multiple_objects",
    "human_action",
    "color",
    "spatial_relationship",
    "scene",
    "appearance_style",
    "temporal_style",
    "overall_consistency",
)
ALL_DIMS: tuple[str, ...] = QUALITY_DIMS + SEMANTIC_DIMS
# vbench refuses these in custom_input mode (VBench-Long in long_custom_input): they need the standard prompt suite's auxiliary info
STANDARD_SUITE_ONLY: frozenset[str] = frozenset(
    {"object_class", "multiple_objects", "scene", "appearance_style", "color", "spatial_relationship"}
)


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to VBENCH_CACHE_DIR (or to the HF hub cache for kind "hf")
    source: str  # where the file comes from
    kind: str = "file"  # file | dir | hf (a model in the Hugging Face cache, $HF_HOME/hub)


_CLIP_B32 = WeightFile(
    "clip_model/ViT-B-32.pt",
    "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
)
_CLIP_L14 = WeightFile(
    "clip_model/ViT-L-14.pt",
    "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
)
_GRIT = WeightFile(
    "grit_model/grit_b_densecap_objectdet.pth",
    "https://datarelease.blob.core.windows.net/grit/models/grit_b_densecap_objectdet.pth",
)
_VICLIP = (
    WeightFile("ViCLIP/ViClip-InternVid-10M-FLT.pth", "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth"),
    WeightFile("ViCLIP/bpe_simple_vocab_16e6.txt.gz", "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz"),
)
_BERT = WeightFile("models--bert-base-uncased", "Hugging Face model bert-base-uncased (tokenizer + config), in $HF_HOME/hub", "hf")

WEIGHTS: dict[str, tuple[WeightFile, ...]] = {
    "subject_consistency": (
        WeightFile("dino_model/facebookresearch_dino_main", "git clone https://github.com/facebookresearch/dino", "dir"),
        WeightFile("dino_model/dino_vitbase16_pretrain.pth", "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    ),
    "background_consistency": (_CLIP_B32,),
    "temporal_flickering": (),
    "motion_smoothness": (WeightFile("amt_model/amt-s.pth", "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"),),
    "dynamic_degree": (
        WeightFile("raft_model/models/raft-things.pth", "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzip into raft_model/)"),
    ),
    "aesthetic_quality": (
        _CLIP_L14,
        WeightFile("aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth", "https://github.com/LAION-AI/aesthetic-predictor/blob/main/sa_0_4_vit_l_14_linear.pth?raw=true"),
    ),
    "imaging_quality": (
        WeightFile("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth", "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth"),
    ),
    "object_class": (_GRIT,),
    "multiple_objects": (_GRIT,),
    "color": (_GRIT,),
    "spatial_relationship": (_GRIT,),
    "human_action": (
        WeightFile("umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth", "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/l16_ptk710_ftk710_ftk400_f16_res224.pth"),
    ),
    "scene": (WeightFile("caption_model/tag2text_swin_14m.pth", "https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/tag2text_swin_14m.pth"), _BERT),
    "appearance_style": (_CLIP_B32,),
    "temporal_style": _VICLIP,
    "overall_consistency": _VICLIP,
}
# python packages a dimension needs beyond vbench's own requirements (not installable from PyPI)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {d: ("detectron2",) for d in ("object_class", "multiple_objects", "color", "spatial_relationship")}


@dataclass(frozen=True)
class Preflight:
    runnable: list[str]  # dimensions whose weights are all present (and allowed in the mode)
    missing: dict[str, list[str]]  # dim -> ["<path> (from <source>)", ...] or the reason it cannot run

    def report(self) -> str:
        lines = [f"runnable: {', '.join(self.runnable) or 'none'}"]
        for dim, items in self.missing.items():
            lines.append(f"{dim}: missing")
            lines.extend(f"  - {item}" for item in items)
        return "\n".join(lines)


def preflight(
    dimensions: list[str],
    cache_dir: str | Path | None,
    *,
    mode: str = "custom_input",
    hf_home: str | Path | None = None,
    has_module=None,
) -> Preflight:
    """Check every file each requested dimension needs; never imports vbench.

    `cache_dir` None means no weights at all (only `temporal_flickering` can run). `has_module(name)` tells
    whether an extra python package is importable in the VBench environment (default: assume it is not).
    """
    unknown = [d for d in dimensions if d not in WEIGHTS]
    if unknown:
        raise ValueError(f"vbench.dimensions: unknown VBench-1.0 dimension(s) {unknown}; known: {', '.join(ALL_DIMS)}")
    cache = Path(cache_dir).expanduser() if cache_dir else None
    hf = Path(hf_home).expanduser() / "hub" if hf_home else None
    runnable: list[str] = []
    missing: dict[str, list[str]] = {}
    for dim in dimensions:
        problems: list[str] = []
        if mode in ("custom_input", "long_custom_input") and dim in STANDARD_SUITE_ONLY:
            problems.append(f"needs the standard VBench prompt suite (mode vbench_standard or long_vbench_standard, files named '{{prompt}}-{{i}}.mp4'); vbench refuses it in {mode} mode")
        for w in WEIGHTS[dim]:
            if w.kind == "hf":
                ok = hf is not None and (hf / w.path).is_dir()
                where = f"{hf / w.path}" if hf else f"$HF_HOME/hub/{w.path} (HF_HOME not set)"
            else:
                target = cache / w.path if cache else None
                ok = target is not None and (target.is_dir() if w.kind == "dir" else target.is_file())
                where = str(target) if target else f"$VBENCH_CACHE_DIR/{w.path} (vbench.cache_dir not set)"
            if not ok:
                problems.append(f"{where} (from {w.source})")
        for mod in EXTRA_MODULES.get(dim, ()):
            if not (has_module and has_module(mod)):
                problems.append(f"python package {mod} in the VBench environment (not on PyPI; build it from source)")
        if problems:
            missing[dim] = problems
        else:
            runnable.append(dim)
    return Preflight(runnable=runnable, missing=missing)
