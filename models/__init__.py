"""RetinaNet (ResNet/ResNeXt-FPN) with anchors, assigners, loss targets and post-processing.

Exports load on first use, so ``models.config`` (the ``model`` config section) imports without torch.
"""
from alrp.lazy import lazy_exports

_EXPORTS = {"PretrainedWeightsError": ".backbone", "build_detector": ".build", "ModelConfig": ".config",
            "RetinaNet": ".retinanet", "LossTargets": ".targets"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
