"""Let the CUDA-linked PyPI torchvision 0.28.0 import on a CPU-only torch 2.13.0.

torchvision's compiled ops library fails to load on the CPU torch; its Python code then registers fake
kernels for `torchvision::nms`/`qnms`, which requires the op schemas to exist. We define the two schemas
before torchvision's extension loader runs, so transforms and models work (the C++ ops themselves do not).
Installed into the venv as a .pth file by scripts/install.sh; a no-op wherever torchvision loads normally.
"""

import importlib.abc
import importlib.util
import sys


def _define_schemas() -> None:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018  (already defined: the real extension loaded)
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    sys.modules["_sara_torchvision_lib"] = lib  # keep the library object alive


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision.extension":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            try:
                module._has_ops()  # noqa: SLF001
                has_ops = module._has_ops()
            except Exception:  # pragma: no cover
                has_ops = False
            if not has_ops:
                _define_schemas()

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
