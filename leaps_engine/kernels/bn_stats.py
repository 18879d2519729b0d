"""BatchNorm-statistics distance of the verifier (paper Eq. 3, after DeepInversion).

For the input ``a`` ``[B, C, T, H, W]`` of a BatchNorm3d layer with running statistics ``m`` and ``v``
(both ``[C]``), the distance of video ``b`` is

    ``|| mu_b - m ||_2 + || var_b - v ||_2``

with ``mu_b`` and ``var_b`` the biased mean and variance of ``a[b]`` over (T, H, W), per channel. The
statistics are per video (Eq. 3 is written per x*), so each video of a batch is optimised exactly as if
alone. ``per_video=False`` takes the statistics over the whole batch (DeepInversion) and returns the
same value for every video.

This function is the reference definition that tests and the fused kernels are checked against.

Fused path (per video), :func:`bn_statistics_loss_triton`: with ``N = T * H * W``,
``loss_b = |mu_b - m| + |var_b - v|`` and the input gradient of element ``x[b, c, n]`` is

    ``g_b * (dmu[b, c] / N + dvar[b, c] * 2 (x[b, c, n] - mu[b, c]) / N)``,
    ``dmu = (mu_b - m) / |mu_b - m|``,  ``dvar = (var_b - v) / |var_b - v|``  (0 where a norm is 0).

Stage 1 reads each element once, in ``[BLOCK_C, BLOCK_N]`` tiles at any strides (contiguous or
channels_last_3d), the reduced axis split into chunks: per tile the mean and the sum of squared
deviations from it (two passes over registers, not ``E[x^2] - E[x]^2``, which cancels catastrophically
for activations with a large offset), tiles and then chunks merged with Chan's parallel formula.
Stage 2, one program per video, merges the chunks into ``mu``, ``var`` ``[B, C]``, the loss and
``dmu``, ``dvar``. Unlike the priming loss the input gradient depends on ``x``, so backward is one more
pass over the saved activation (a second ``triton_op``); the trade-off is keeping the activation alive
for backward instead of writing a full-size gradient during the forward.
"""

import torch

from leaps_engine.kernels._triton import launch, register_triton_op, require_triton
from leaps_engine.kernels.launch_plans import bn_backward_launch, bn_statistics_plan


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


# --- custom ops + autograd --------------------------------------------------------------------------


def _bn_statistics_loss_fused(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``leaps_engine::bn_statistics_loss``: ``(loss [B], mean, var, dmu, dvar [B, C])``."""
    batch, channels = activation.shape[0], activation.shape[1]
    x = activation.reshape(batch, channels, -1)  # a view for contiguous and channels_last_3d inputs
    plan = bn_statistics_plan(batch, channels, x.shape[2], x.stride(), str(x.dtype).removeprefix("torch."))
    float32 = {"device": x.device, "dtype": torch.float32}
    buffers = {"x": x, "running_mean": running_mean.contiguous(), "running_var": running_var.contiguous(),
               "chunk_means": torch.empty((batch, channels, plan.num_chunks), **float32),
               "chunk_m2": torch.empty((batch, channels, plan.num_chunks), **float32),
               "loss": torch.empty((batch,), **float32),
               **{name: torch.empty((batch, channels), **float32) for name in ("mean", "var", "dmu", "dvar")}}
    launch(plan.partial_moments, buffers)
    launch(plan.distance, buffers)
    return tuple(buffers[name] for name in ("loss", "mean", "var", "dmu", "dvar"))


def _bn_statistics_loss_backward_fused(
    activation: torch.Tensor, mean: torch.Tensor, dmu: torch.Tensor, dvar: torch.Tensor, grad_loss: torch.Tensor
) -> torch.Tensor:
    """``leaps_engine::bn_statistics_loss_backward``: ``d activation`` in its dtype, shape and layout."""
    batch, channels = activation.shape[0], activation.shape[1]
    x = activation.reshape(batch, channels, -1)
    dx = torch.empty_like(x)  # x's dtype and (dense) strides
    plan = bn_backward_launch(batch, channels, x.shape[2], x.stride(), dx.stride(), str(x.dtype).removeprefix("torch."))
    launch(plan, {"x": x, "dx": dx, "mean": mean.contiguous(), "dmu": dmu.contiguous(), "dvar": dvar.contiguous(),
                  "grad_loss": grad_loss.float().contiguous()})
    return dx.view(activation.shape)  # dx has x's strides, so channels_last_3d survives the view


def _bn_statistics_loss_setup_context(ctx, inputs, output) -> None:
    activation, _running_mean, _running_var = inputs
    _loss, mean, var, dmu, dvar = output
    ctx.mark_non_differentiable(mean, var, dmu, dvar)
    ctx.save_for_backward(activation, mean, dmu, dvar)


def _bn_statistics_loss_backward(ctx, grad_loss: torch.Tensor, *_grad_statistics: torch.Tensor):
    """Input gradient only: the running statistics are constants."""
    activation, mean, dmu, dvar = ctx.saved_tensors
    grad = torch.ops.leaps_engine.bn_statistics_loss_backward(activation, mean, dmu, dvar, grad_loss)
    return grad, None, None


register_triton_op(
    "leaps_engine::bn_statistics_loss",
    _bn_statistics_loss_fused,
    backward=_bn_statistics_loss_backward,
    setup_context=_bn_statistics_loss_setup_context,
)
register_triton_op("leaps_engine::bn_statistics_loss_backward", _bn_statistics_loss_backward_fused)


# --- functional entry point -------------------------------------------------------------------------


def bn_statistics_loss_triton(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> torch.Tensor:
    """Per-video ``|mu_b - m| + |var_b - v|``, ``[B]`` float32, by the fused Triton kernels.

    ``activation`` ``[B, C, *S]`` (contiguous or channels_last_3d; float32, bfloat16 or float16),
    ``running_mean``, ``running_var`` ``[C]`` (constants: no gradient). Same value as
    ``bn_statistics_loss_ref(activation, running_mean, running_var, per_video=True)``.
    """
    if not torch.compiler.is_compiling():  # checked once, eagerly: tracing it would break the graph
        require_triton("bn_statistics_loss_triton", activation, running_mean, running_var)
    channels = activation.shape[1] if activation.dim() >= 2 else -1
    if running_mean.shape != (channels,) or running_var.shape != (channels,):
        shapes = f"{tuple(activation.shape)}, {tuple(running_mean.shape)}, {tuple(running_var.shape)}"
        raise ValueError(f"expected activation [B, C, *S] and running statistics [C], got {shapes}")
    loss, *_ = torch.ops.leaps_engine.bn_statistics_loss(activation, running_mean, running_var)
    return loss
