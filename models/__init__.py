"""RetinaNet (ResNet/ResNeXt-FPN) with anchors, assigners, loss targets and post-processing."""
from .backbone import PretrainedWeightsError
from .build import build_detector
from .config import ModelConfig
from .retinanet import RetinaNet
from .targets import LossTargets

Detector = RetinaNet

__all__ = ["build_detector", "ModelConfig", "LossTargets", "Detector", "PretrainedWeightsError", "RetinaNet"]
