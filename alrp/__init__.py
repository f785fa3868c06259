"""aLRP Loss research framework: the losses are importable without the rest (``from alrp import alrp_loss``)."""
from alrp.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {"ALRPResult": ".losses.alrp", "alrp_loss": ".losses.alrp", "ap_loss": ".losses.ap"})
__all__ = ["ALRPResult", "alrp_loss", "ap_loss"]
