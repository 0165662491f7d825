"""RoPE as complex multiplication (Su et al. 2021, eq. 34), in HF's rotate-half pairing: dimension i and
i + D/2 form the complex number x_i + j x_{i+D/2}, rotated by e^{j p theta^(-2i/D)}. Test oracle only."""

import torch


def rope_complex(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """x (B, H, T, D) float64, positions (T,) -> rotated x."""
    D = x.shape[-1]
    half = D // 2
    z = torch.complex(x[..., :half], x[..., half:])  # (B, H, T, D/2)
    freqs = torch.tensor([theta ** (-2 * i / D) for i in range(half)], dtype=torch.float64)
    angle = positions.double()[:, None] * freqs  # (T, D/2)
    z = z * torch.polar(torch.ones_like(angle), angle)
    return torch.cat((z.real, z.imag), dim=-1)
