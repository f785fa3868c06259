"""`backbone.pretrained` by name: `imagenet` (or a torchvision enum such as `ResNet50_Weights.IMAGENET1K_V2`)
-> a state-dict file in the torch hub cache (`$TORCH_HOME/hub/checkpoints/`), downloaded when missing.

Anything else is a local file path and is returned unchanged. Loading and checking the file stays in
`models.backbone.load_pretrained`, so named and local weights go through the same key and shape checks.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlparse

# torch / torchvision are imported inside the functions: `models.config` uses `is_named` and must stay light.
log = logging.getLogger(__name__)

IMAGENET = "imagenet"
DEFAULT_IMAGENET = "IMAGENET1K_V1"  # the original torchvision ResNet/ResNeXt weights (what RetinaNet-era work used)
_ENUM_NAME = re.compile(r"^\w+_Weights\.\w+$")
# torchvision's weights enum of each body (checked against torchvision in tests), so that the config can be
# validated without importing torchvision
WEIGHTS_ENUMS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights",
                 "resnet101": "ResNet101_Weights", "resnext101_32x8d": "ResNeXt101_32X8D_Weights",
                 "resnext101_64x4d": "ResNeXt101_64X4D_Weights"}


class PretrainedWeightsError(ValueError):
    """`backbone.pretrained` is not a torchvision-format state dict that fits the backbone (message names the file)."""


class WeightsUnavailableError(PretrainedWeightsError):
    """Named weights are neither in the torch hub cache nor downloadable (one line: cache file and URL)."""


def is_named(spec: str) -> bool:
    """True for `imagenet` or a torchvision weights enum name (`ResNet50_Weights.IMAGENET1K_V1`)."""
    return spec == IMAGENET or bool(_ENUM_NAME.match(spec))


def name_problem(backbone: str, spec: str) -> str | None:
    """Why the weights name `spec` cannot serve body `backbone` (an enum of another body), or None; no imports."""
    if spec == IMAGENET or not is_named(spec):
        return None
    family = WEIGHTS_ENUMS.get(backbone)
    if family is not None and spec.split(".")[0] != family:
        return f"{spec} are weights for another body than {backbone} (use {family}.<name>)"
    return None


def weights_enum(backbone: str, spec: str):
    """The torchvision `WeightsEnum` member `spec` names for body `backbone` (e.g. 'resnet50').

    `imagenet` -> `<Body>_Weights.IMAGENET1K_V1`; an explicit enum name must belong to the body's enum.
    """
    from torchvision.models import get_model_weights, get_weight

    family = get_model_weights(backbone)
    if spec == IMAGENET:
        return family[DEFAULT_IMAGENET]
    try:
        weights = get_weight(spec)
    except (ValueError, KeyError, AttributeError):
        raise PretrainedWeightsError(f"backbone.pretrained: unknown torchvision weights {spec!r}") from None
    if type(weights) is not family:
        raise PretrainedWeightsError(f"backbone.pretrained: {spec} are weights for another body than {backbone} "
                                     f"(use {family.__name__}.<name>)")
    return weights


def cache_file(url: str) -> Path:
    """Where torchvision keeps the weights of `url`: `<torch.hub.get_dir()>/checkpoints/<file name>`."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _download(url: str, dst: Path) -> None:
    """Fetches `url` to `dst`, checking the hash prefix in the file name as torchvision does."""
    import torch

    match = torch.hub.HASH_REGEX.search(dst.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=True)


def resolve_pretrained(backbone: str, spec: str) -> str:
    """Local path of the weights `spec` names for `backbone`; a path that is not a name is returned as is.

    Raises:
        WeightsUnavailableError: not cached and the download failed (offline, proxy, hash mismatch, ...).
    """
    if not is_named(spec):
        return spec
    weights = weights_enum(backbone, spec)
    file = cache_file(weights.url)
    if file.is_file():
        return str(file)
    label = f"{type(weights).__name__}.{weights.name}"
    log.info("backbone: downloading %s from %s to %s", label, weights.url, file)
    try:
        _download(weights.url, file)
    except Exception as err:  # URLError / OSError offline, RuntimeError on a hash mismatch
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise WeightsUnavailableError(
            f"backbone.pretrained: {label} is not in the torch hub cache ({file}) and cannot be downloaded "
            f"({reason}); fetch {weights.url} into {file.parent} (set TORCH_HOME to use another cache)") from None
    return str(file)
