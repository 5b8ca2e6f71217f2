"""ONNX export of the user-aware BART: an encoder graph and a one-step decoder with KV cache.

The graphs are written from BART's own submodules (the same weights, the same order of
operations) rather than by tracing `BartForConditionalGeneration.forward`: transformers'
mask and cache helpers branch on Python values at trace time and change between releases,
while these few lines do not. `training.parity` proves the result token for token.
optimum's exporter is not used: it cannot express the `user_embeds` input, and its pin to
transformers<4.58 would hold the whole project on an old release (see README).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from explain import artifacts as spec
from training.graph_candidates import add_candidates
from training.graph_shapes import constant_reshapes
from training.modeling import UserAwareBart
from training.shared_weights import share_token_embedding

logger = logging.getLogger(__name__)
OPSET = 17


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    weights = torch.matmul(q, k.transpose(2, 3))
    if bias is not None:
        weights = weights + bias
    out = torch.matmul(torch.softmax(weights, dim=-1), v)
    b, h, t, dh = out.shape
    return out.transpose(1, 2).reshape(b, t, h * dh)


def _mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Same additive mask as transformers: 0 where attended, the dtype's minimum elsewhere.
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class EncoderGraph(nn.Module):
    def __init__(self, model: UserAwareBart) -> None:
        super().__init__()
        self.encoder = model.bart.model.encoder
        self.decoder_layers = model.bart.model.decoder.layers
        self.heads = int(model.config.encoder_attention_heads or 0)
        self.dec_heads = int(model.config.decoder_attention_heads or 0)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, user_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        enc = self.encoder
        x = enc.embed_tokens(input_ids) + user_embeds[:, None, :]
        positions = (
            torch.arange(input_ids.shape[1], device=input_ids.device) + enc.embed_positions.offset
        )
        x = enc.layernorm_embedding(x + enc.embed_positions.weight[positions][None])
        bias = _mask_bias(attention_mask, x.dtype)
        for layer in enc.layers:
            attn = layer.self_attn
            q = _split_heads(attn.q_proj(x) * attn.scaling, self.heads)
            k = _split_heads(attn.k_proj(x), self.heads)
            v = _split_heads(attn.v_proj(x), self.heads)
            x = layer.self_attn_layer_norm(x + attn.out_proj(_attend(q, k, v, bias)))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        outputs: list[torch.Tensor] = []
        for layer in self.decoder_layers:
            cross = layer.encoder_attn
            outputs += [
                _split_heads(cross.k_proj(x), self.dec_heads),
                _split_heads(cross.v_proj(x), self.dec_heads),
            ]
        return tuple(outputs)


class DecoderGraph(nn.Module):
    def __init__(self, model: UserAwareBart) -> None:
        super().__init__()
        self.decoder = model.bart.model.decoder
        self.lm_head = model.bart.lm_head
        self.register_buffer("final_logits_bias", model.bart.final_logits_bias.detach().clone())
        self.heads = int(model.config.decoder_attention_heads or 0)
        self.num_layers = len(self.decoder.layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        beam_idx: torch.Tensor,
        decoder_position: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        *cache: torch.Tensor,  # past k/v for each layer, then cross k/v for each layer
    ) -> tuple[torch.Tensor, ...]:
        dec, n = self.decoder, self.num_layers
        past, cross = cache[: 2 * n], cache[2 * n :]
        # Each row's own position and its own valid cache columns: rows that joined the
        # running batch at different steps share one cache whose older columns they mask.
        position = decoder_position + dec.embed_positions.offset
        x = dec.embed_tokens(input_ids) + dec.embed_positions.weight[position][:, None, :]
        x = dec.layernorm_embedding(x)
        bias = _mask_bias(encoder_attention_mask, x.dtype)
        self_bias = _mask_bias(decoder_attention_mask, x.dtype)
        presents: list[torch.Tensor] = []
        for i, layer in enumerate(dec.layers):
            attn = layer.self_attn
            q = _split_heads(attn.q_proj(x) * attn.scaling, self.heads)
            k = torch.cat(
                [past[2 * i].index_select(0, beam_idx), _split_heads(attn.k_proj(x), self.heads)],
                dim=2,
            )
            v = torch.cat(
                [
                    past[2 * i + 1].index_select(0, beam_idx),
                    _split_heads(attn.v_proj(x), self.heads),
                ],
                dim=2,
            )
            presents += [k, v]
            # One new token attends to its row's cached positions: no causal mask is needed,
            # only the columns written before the row joined are masked.
            x = layer.self_attn_layer_norm(x + attn.out_proj(_attend(q, k, v, self_bias)))
            cross_attn = layer.encoder_attn
            q = _split_heads(cross_attn.q_proj(x) * cross_attn.scaling, self.heads)
            x = layer.encoder_attn_layer_norm(
                x + cross_attn.out_proj(_attend(q, cross[2 * i], cross[2 * i + 1], bias))
            )
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        logits = self.lm_head(x[:, -1, :]) + self.final_logits_bias
        return (logits, *presents)


def _rewrite(path: Path, vocab: int | None) -> None:
    """Rewrite the exported reshapes' run-time shape arithmetic as constants
    (`training.graph_shapes`); give the decoder (`vocab` set) its next-token candidates
    (`training.graph_candidates`)."""
    graph = onnx.load(str(path))
    rewritten = constant_reshapes(graph)
    if vocab is not None:
        add_candidates(graph, min(spec.CANDIDATES, vocab))
    onnx.save(graph, str(path))
    logger.info("%s: %d reshapes with constant shapes", path.name, rewritten)


def export_onnx(model: UserAwareBart, out_dir: Path, *, opset: int = OPSET) -> spec.OnnxSpec:
    """Write encoder.onnx, decoder.onnx and export.json into `out_dir`."""
    model = model.eval().to("cpu")
    cfg = model.config
    n, heads, d_model = (
        int(cfg.decoder_layers or 0),
        int(cfg.decoder_attention_heads or 0),
        int(cfg.d_model or 0),
    )
    head_dim = d_model // heads
    out_dir.mkdir(parents=True, exist_ok=True)
    b, s, t = 2, 7, 3
    ids = torch.full((b, s), 5, dtype=torch.long)
    mask = torch.ones((b, s), dtype=torch.long)
    user = torch.zeros((b, d_model))
    cross_out = [name for i in range(n) for name in spec.cross_names(i)]
    kv_axes = {0: "batch", 2: "src"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            EncoderGraph(model),
            (ids, mask, user),
            str(out_dir / spec.ENCODER_FILE),
            input_names=["input_ids", "attention_mask", "user_embeds"],
            output_names=cross_out,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "src"},
                "attention_mask": {0: "batch", 1: "src"},
                "user_embeds": {0: "batch"},
                **{name: dict(kv_axes) for name in cross_out},
            },
            opset_version=opset,
            dynamo=False,
        )
        past_in = [name for i in range(n) for name in spec.past_names(i)]
        present_out = [name for i in range(n) for name in spec.present_names(i)]
        cross_in = cross_out
        past = [torch.zeros((b, heads, t, head_dim)) for _ in past_in]
        cross = [torch.zeros((b, heads, s, head_dim)) for _ in cross_in]
        torch.onnx.export(
            DecoderGraph(model),
            (
                ids[:, :1],
                mask,
                torch.arange(b),
                torch.full((b,), t, dtype=torch.long),
                torch.ones((b, t + 1), dtype=torch.long),
                *past,
                *cross,
            ),
            str(out_dir / spec.DECODER_FILE),
            input_names=[*spec.DECODER_INPUTS, *past_in, *cross_in],
            output_names=[spec.LOGITS, *present_out],
            dynamic_axes={
                "input_ids": {0: "batch"},
                "encoder_attention_mask": {0: "batch", 1: "src"},
                "beam_idx": {0: "batch"},
                "decoder_position": {0: "batch"},
                "decoder_attention_mask": {0: "batch", 1: "total"},
                **{name: {0: "batch", 2: "past"} for name in past_in},
                **{name: {0: "batch", 2: "total"} for name in present_out},
                **{name: dict(kv_axes) for name in cross_in},
                spec.LOGITS: {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    vocab = int(model.bart.lm_head.out_features)
    _rewrite(out_dir / spec.ENCODER_FILE, None)
    _rewrite(out_dir / spec.DECODER_FILE, vocab)
    result = spec.OnnxSpec(
        decoder_layers=n,
        num_heads=heads,
        head_dim=head_dim,
        d_model=d_model,
        vocab_size=vocab,
        max_positions=int(cfg.max_position_embeddings),
        opset=opset,
        exporter=f"torch.onnx (TorchScript) {torch.__version__}",
    )
    result.save(out_dir)
    share_token_embedding(out_dir, spec.FP32)
    logger.info("exported ONNX graphs to %s", out_dir)
    return result
