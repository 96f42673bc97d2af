import pytest
import torch
import torch.nn.functional as F

from seqgen.config import MODEL_TYPES
from seqgen.models import build_model, config_from_dict, make_config

V, MID = 23, 21


def tiny(model_type, **kw):
    torch.manual_seed(0)
    cfg = make_config(model_type, V, "tiny", mid_id=MID, **kw)
    return build_model(cfg).eval()


def ids(b=2, t=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V - 4, (b, t), generator=g)
    x[:, t // 2] = MID  # exercises lstm-attn's switch from encoder to decoder states
    return x


VARIANTS = [(m, {}) for m in MODEL_TYPES] + [("lstm-attn", {"score": "dot"}), ("lstm-attn", {"score": "concat"}),
                                             ("transformer", {"window": 8}), ("lstm-attn", {"memory": 5})]
VARIANT_IDS = [m + "".join(f"-{k}={v}" for k, v in kw.items()) for m, kw in VARIANTS]


@pytest.mark.parametrize("model_type,kw", VARIANTS, ids=VARIANT_IDS)
def test_window_forward_equals_token_steps(model_type, kw):
    model = tiny(model_type, **kw)
    x = ids()
    with torch.no_grad():
        full, _ = model(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            out, state = model(x[:, t : t + 1], state)
            steps.append(out)
        chunked, state2 = [], None
        for t in range(0, x.shape[1], 7):
            out, state2 = model(x[:, t : t + 7], state2)
            chunked.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(chunked, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["lstm-attn", "transformer"])
def test_attention_is_causal(model_type):
    model = tiny(model_type)
    x = ids(1, 20)
    y = x.clone()
    y[0, 12:] = (y[0, 12:] + 1) % (V - 4)
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_transformer_samples_past_its_window():
    model = tiny("transformer", window=8)
    x = ids(1, 40)
    with torch.no_grad():
        _, state = model(x)
    k, v, pos = state
    assert k.shape[3] == 7 and int(pos) == 40  # the cache keeps window - 1 keys, however long the text


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_overfits_one_batch(model_type):
    model = tiny(model_type).train()
    x = ids(4, 25, seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first and loss.item() < 1.0


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_config_round_trip(model_type):
    model = tiny(model_type)
    cfg = config_from_dict(model.config.to_dict())
    assert cfg == model.config
    assert cfg.to_dict()["type"] == model_type


def reference_lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step written from the gate equations (PyTorch's gate order i|f|g|o):
    f = σ(W_f·[h, x] + b_f), i = σ(W_i·[h, x] + b_i), C~ = tanh(W_C·[h, x] + b_C),
    C = f*C_prev + i*C~, o = σ(W_o·[h, x] + b_o), h = o*tanh(C)."""
    H = h.shape[-1]
    W = torch.cat((w_hh, w_ih), dim=1)  # acts on [h, x]
    b = b_ih + b_hh
    z = torch.cat((h, x), dim=-1) @ W.T + b
    i = torch.sigmoid(z[:, 0:H])
    f = torch.sigmoid(z[:, H : 2 * H])
    c_tilde = torch.tanh(z[:, 2 * H : 3 * H])
    o = torch.sigmoid(z[:, 3 * H : 4 * H])
    c = f * c + i * c_tilde
    return o * torch.tanh(c), c


def test_nn_lstm_matches_reference_cell():
    model = tiny("lstm", layers=2)
    x = ids(3, 9)
    with torch.no_grad():
        logits, (h_fast, c_fast) = model(x)
        inp = model.embed(x)
        hs = [torch.zeros(3, model.config.dim) for _ in range(2)]
        cs = [torch.zeros(3, model.config.dim) for _ in range(2)]
        outs = []
        for t in range(x.shape[1]):
            layer_in = inp[:, t]
            for layer in range(2):
                p = {n: getattr(model.rnn, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                hs[layer], cs[layer] = reference_lstm_cell(layer_in, hs[layer], cs[layer], p["weight_ih"],
                                                           p["weight_hh"], p["bias_ih"], p["bias_hh"])
                layer_in = hs[layer]
            outs.append(model.head(layer_in))
    torch.testing.assert_close(torch.stack(outs, 1), logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(hs), h_fast, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(cs), c_fast, atol=1e-5, rtol=1e-4)


def test_lstm_attn_decoder_reads_encoder_states_of_the_context():
    model = tiny("lstm-attn")
    x = ids(1, 16)
    with torch.no_grad():
        base, _ = model(x)
        # Changing the encoder's weights changes the middle's predictions (it attends over the
        # encoder's states) but not the context's own first position's prediction source (decoder).
        for p in model.encoder.parameters():
            p.add_(0.5)
        changed, _ = model(x)
    mid_at = int((x[0] == MID).nonzero()[0])
    assert not torch.allclose(base[:, mid_at:], changed[:, mid_at:])


def test_bad_configs_raise():
    from seqgen.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of heads"):
        make_config("transformer", V, "tiny", dim=30, heads=4)
    with pytest.raises(ConfigError, match="score"):
        make_config("lstm-attn", V, "tiny", score="cosine")
    with pytest.raises(ConfigError, match="unknown model"):
        make_config("mamba", V)
