"""Shared DDF test inputs."""
import torch


def make_inputs(B, C, H, W, G, k, s, d, dtype=torch.float64, device="cpu", requires_grad=True):
    Ho, Wo = -(-H // s), -(-W // s)
    x = torch.randn(B, C, H, W, dtype=dtype, device=device)
    cf = torch.randn(B, C, k, k, dtype=dtype, device=device)
    sf = torch.randn(B, G * k * k, Ho, Wo, dtype=dtype, device=device)
    return [t.requires_grad_(requires_grad) for t in (x, cf, sf)]


# (B, C, H, W, G, k, s, d, combine): odd sizes, batch 1, heads, k=1, stride, dilation
CASES = [
    (2, 8, 13, 17, 1, 3, 1, 1, "mul"),
    (1, 6, 9, 11, 2, 5, 2, 2, "add"),
    (2, 4, 10, 7, 1, 3, 2, 1, "mul"),
    (1, 4, 15, 15, 4, 7, 3, 1, "mul"),
    (1, 3, 5, 6, 1, 1, 1, 1, "add"),
    (1, 5, 7, 9, 1, 1, 2, 1, "mul"),
    (3, 16, 12, 12, 2, 3, 1, 2, "mul"),
    (1, 8, 11, 9, 1, 5, 1, 1, "add"),
    (2, 6, 8, 8, 3, 3, 2, 2, "add"),
    (1, 2, 3, 4, 1, 7, 1, 1, "mul"),  # kernel larger than the image
    (1, 4, 33, 20, 1, 3, 1, 1, "mul"),  # rows longer than a few vectors
    (1, 1, 5, 1, 1, 3, 1, 1, "mul"),  # width 1
    (1, 1, 1, 1, 1, 1, 1, 1, "add"),  # every axis 1
]
