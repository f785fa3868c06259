"""Ranking-based losses (AP, aLRP, NDCG) on one error-driven framework, self-balancing and box losses.

Exports load on first use, so ``alrp.losses.config`` (the ``loss`` config section) imports without torch.
"""
from alrp.lazy import lazy_exports

_EXPORTS = {"ALRPResult": ".alrp", "alrp_loss": ".alrp", "ap_loss": ".ap", "ap_loss_result": ".ap",
            "SelfBalance": ".balance", "LossConfig": ".config", "ndcg_loss": ".ndcg", "RankingResult": ".ranking"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
