"""BatchNorm-statistics distance of the verifier (paper Eq. 3, after DeepInversion).

For the input ``a`` ``[B, C, T, H, W]`` of a BatchNorm3d layer with running statistics ``m`` and ``v``
(both ``[C]``), the distance of video ``b`` is

    ``|| mu_b - m ||_2 + || var_b - v ||_2``

with ``mu_b`` and ``var_b`` the biased mean and variance of ``a[b]`` over (T, H, W), per channel. The
statistics are per video (Eq. 3 is written per x*), so each video of a batch is optimised exactly as if
alone. ``per_video=False`` takes the statistics over the whole batch (DeepInversion) and returns the
same value for every video.

This function is the reference definition that tests and the fused kernels are checked against.
"""

import torch


def bn_statistics_loss_ref(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, per_video: bool = True
) -> torch.Tensor:
    """Distance ``[B]`` of the statistics of ``activation`` ``[B, C, *S]`` from the running statistics."""
    x = activation.float().flatten(2)  # [B, C, N]
    if per_video:
        mean = x.mean(dim=2)  # [B, C]
        var = x.var(dim=2, unbiased=False)
    else:
        mean = x.mean(dim=(0, 2)).unsqueeze(0)  # [1, C]
        var = x.var(dim=(0, 2), unbiased=False).unsqueeze(0)
    distance = (mean - running_mean.float()).norm(dim=1) + (var - running_var.float()).norm(dim=1)
    return distance.expand(activation.shape[0])
