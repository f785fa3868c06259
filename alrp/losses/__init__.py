"""Ranking-based losses (AP, aLRP, NDCG) on one error-driven framework, self-balancing and box losses."""
from alrp.losses.alrp import ALRPResult, alrp_loss
from alrp.losses.ap import ap_loss, ap_loss_result
from alrp.losses.balance import SelfBalance
from alrp.losses.config import LossConfig
from alrp.losses.ndcg import ndcg_loss
from alrp.losses.ranking import RankingResult

__all__ = ["ALRPResult", "LossConfig", "RankingResult", "SelfBalance", "alrp_loss", "ap_loss", "ap_loss_result",
           "ndcg_loss"]
