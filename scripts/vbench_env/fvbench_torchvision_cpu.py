"""Installed into the VBench environment by scripts/setup_vbench_env.sh only when torchvision's compiled ops cannot
load beside its torch (PyPI's torchvision is built against CUDA torch; with the CPU torch its _C.so misses
libtorch_cuda.so and `import torchvision` fails with "operator torchvision::nms does not exist").

A finder that acts once, when torchvision is first imported: if torchvision's _C.so still does not load, it declares
the two operator schemas torchvision registers fakes for without checking (nms, qnms), so the pure-Python parts
(transforms, models) import. The operators have no kernel: calling them raises, as torchvision.ops would anyway
without its extension. VBench's dimensions that run without detectron2 use no torchvision operator.
"""

import importlib.abc
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        import os

        import torch

        spec = importlib.util.find_spec("torchvision")
        lib = os.path.join(os.path.dirname(spec.origin), "_C.so") if spec and spec.origin else None
        try:
            torch.ops.load_library(lib)
        except Exception:
            defs = torch.library.Library("torchvision", "DEF")
            defs.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            defs.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            sys.modules[__name__]._library = defs  # kept alive: dropping it would undo the definitions
        return None


sys.meta_path.insert(0, _DeclareTorchvisionOps())
