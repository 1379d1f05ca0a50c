"""SupCon: SimCLR's model and loss over the label graph (and the semi-supervised union).

Not a second implementation: ``simclr.loss_fn`` with ``config.method.graph`` set to
``"label"`` (every view of every image of the same class is a positive, Khosla et al.'s
:math:`L^{sup}_{out}`) or ``"union"`` (labelled examples by class, the rest by image). The
loss is ``contrastive.multi_positive_nt_xent``, the mean over anchors of
``-mean_{p in P(i)} log softmax_i(p)`` with the anchor itself excluded from the denominator.

References:
  Khosla et al., Supervised Contrastive Learning, NeurIPS 2020.
  https://arxiv.org/abs/2004.11362
"""

from jaxssl.methods.simclr import build_model, loss_fn

__all__ = ["build_model", "loss_fn"]
