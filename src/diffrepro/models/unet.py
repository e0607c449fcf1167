"""Small DDPM-style UNet for images: ResBlocks with GroupNorm and a (t, y) embedding, optional self-attention at
chosen resolutions, skip connections by concatenation. `net(x [B, C, H, W], t [B], y=None) -> [B, C, H, W]`.
Any H, W (upsampling matches the skip's size, so 28×28 MNIST works with three levels)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conditioning, expand_t, group_norm, zero_init


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.drop = group_norm(cout), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm, self.qkv, self.proj = group_norm(ch), nn.Conv2d(ch, 3 * ch, 1), zero_init(nn.Conv2d(ch, ch, 1))

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [b, heads, hw, c/heads]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, channels: int = 32, channel_mult=(1, 2),
                 num_res_blocks: int = 1, attention_resolutions=(), dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        emb_dim = 4 * channels
        self.cond = Conditioning(channels, emb_dim, num_classes)
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        attn_at = set(attention_resolutions)
        self.down, skips, ch, res = nn.ModuleList(), [channels], channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(self._stage(ch, channels * mult, emb_dim, dropout, res in attn_at))
                ch = channels * mult
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res = (res + 1) // 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), Attention(ch) if attn_at else nn.Identity(),
                                  ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._stage(ch + skips.pop(), channels * mult, emb_dim, dropout, res in attn_at))
                ch = channels * mult
            if level > 0:
                self.up.append(Upsample(ch))
                res *= 2
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, in_channels, 3, padding=1)))

    @staticmethod
    def _stage(cin, cout, emb_dim, dropout, attention):
        blocks = [ResBlock(cin, cout, emb_dim, dropout)] + ([Attention(cout)] if attention else [])
        return Stage(blocks)

    def forward(self, x, t, y=None):
        emb = F.silu(self.cond(expand_t(t, x.shape[0], x.device), y))
        h = self.inp(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Stage) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if not isinstance(layer, nn.Identity) else h
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h, hs[-1].shape[-2:])
            else:
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


class Stage(nn.ModuleList):
    def forward(self, h, emb):
        for block in self:
            h = block(h, emb)
        return h


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, size):
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))
