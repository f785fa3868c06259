"""aLRP Loss research framework: the losses are importable without the rest (``from alrp import alrp_loss``)."""
from alrp.losses import ALRPResult, alrp_loss, ap_loss

__all__ = ["ALRPResult", "alrp_loss", "ap_loss"]
