"""Hard-Concrete gates, the gated units of Whisper encoders and HuBERT models, the expected
parameter count and the sparsity loss (speechdistill.prune)."""

from __future__ import annotations

import math

import pytest
import torch
from prune_helpers import hubert_input, tiny_hubert, tiny_whisper_encoder, whisper_input

from speechdistill.prune.gates import PruningGates, expected_params
from speechdistill.prune.hardconcrete import HardConcrete
from speechdistill.prune.sparsity import (
    Lagrangian,
    expected_sparsity,
    param_groups,
    sparsity_loss,
    target_sparsity,
)

BETA = 2 / 3


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _gate(log_alpha) -> HardConcrete:
    gate = HardConcrete(len(log_alpha))
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor(log_alpha, dtype=torch.float32))
    return gate


def test_expected_l0_by_hand():
    # P(z > 0) = P(s (r - l) + l > 0) = P(s > 1/12) = sigmoid(log_alpha + beta ln 11)
    gate = _gate([0.0, 2.0, -1.0])
    want = [_sigmoid(a + BETA * math.log(11)) for a in (0.0, 2.0, -1.0)]
    assert want[0] == pytest.approx(0.83182, abs=1e-5)
    assert gate.prob_nonzero().tolist() == pytest.approx(want, abs=1e-6)
    assert gate.l0_norm().item() == pytest.approx(sum(want), abs=1e-5)


def test_sampling_statistics_match_the_stretched_concrete():
    torch.manual_seed(0)
    n = 200_000
    gate = _gate([0.0] * n).train()
    z = gate()
    assert z.min() >= 0 and z.max() <= 1
    # P(z > 0) = sigmoid(beta ln 11); P(z = 1) = P(s > 11/12) = sigmoid(-beta ln 11)
    assert (z > 0).float().mean().item() == pytest.approx(_sigmoid(BETA * math.log(11)), abs=0.005)
    assert (z == 1).float().mean().item() == pytest.approx(
        _sigmoid(-BETA * math.log(11)), abs=0.005
    )
    # and the mask is a differentiable function of log_alpha
    z.sum().backward()
    assert gate.log_alpha.grad.abs().sum() > 0


def test_initial_log_alpha_follows_dphubert():
    torch.manual_seed(0)
    heads = HardConcrete(1000, init_mean=0.01)
    assert heads.log_alpha.mean().item() == pytest.approx(math.log(99), abs=0.01)
    assert heads.log_alpha.std().item() == pytest.approx(0.01, rel=0.2)
    assert HardConcrete(1000, init_mean=0.5).log_alpha.mean().item() == pytest.approx(0, abs=0.01)
    with pytest.raises(ValueError, match="init_mean"):
        HardConcrete(3, init_mean=1.0)


def test_deterministic_mask_by_hand():
    # P(z > 0) = 0.1976, 0.4010, 0.8318, 0.9963: E[L0] = 2.427, 1.573 zeros expected → 2 zeros,
    # the gates of the smallest log_alpha; the others sigmoid(0.8 log_alpha / beta)
    gate = _gate([-3.0, -2.0, 0.0, 4.0]).eval()
    assert gate.l0_norm().item() == pytest.approx(2.4267, abs=1e-3)
    mask = gate()
    assert mask.tolist() == pytest.approx([0.0, 0.0, 0.5, _sigmoid(4 * 1.2)], abs=1e-6)
    # one expected zero (E[L0] = 2.9998): only the smallest goes
    mask = _gate([0.0, 5.0, -3.0, 2.0]).eval()()
    assert mask.tolist() == pytest.approx([0.5, _sigmoid(6.0), 0.0, _sigmoid(2.4)], abs=1e-6)
    # a count offset moves the number of zeros only: log_alpha - 3 gives P(z > 0) = 0.0121,
    # 0.0323, 0.1978, 0.9309 (E[L0] = 1.17, 2.83 zeros → 3); the kept gate keeps its value
    gate = _gate([-3.0, -2.0, 0.0, 4.0]).eval()
    gate.count_offset = -3.0
    assert gate.prob_nonzero(-3.0).sum().item() == pytest.approx(1.1731, abs=1e-3)
    assert gate().tolist() == pytest.approx([0.0, 0.0, 0.0, _sigmoid(4 * 1.2)], abs=1e-6)


def test_gates_cover_dphubert_units_on_whisper():
    model = tiny_whisper_encoder()
    gates = PruningGates(model)
    sizes = {k: g.n for k, g in gates.gates.items()}
    # conv1's 64 output channels (conv2's are the residual width); 4 heads, 128 neurons a layer
    assert sizes == {
        "conv_0": 64,
        "layer_0_head": 4,
        "layer_0_interm": 128,
        "layer_1_head": 4,
        "layer_1_interm": 128,
    }
    assert gates.gates["layer_0_head"].init_mean == 0.01
    assert gates.gates["layer_0_interm"].init_mean == 0.5
    assert gates.gates["conv_0"].init_mean == 0.01
    # whole attention / FFN blocks on request: one gate each, starting open as DPHuBERT's
    blocks = PruningGates(model, ("attlayer", "ffnlayer")).gates
    assert {k: g.n for k, g in blocks.items()} == {
        f"layer_{i}_{b}": 1 for i in range(2) for b in ("attlayer", "ffnlayer")
    }
    assert blocks["layer_0_attlayer"].init_mean == 0.01


def test_gates_change_outputs_only_through_masks():
    model = tiny_whisper_encoder()
    x = whisper_input()
    with torch.no_grad():
        plain = model(x).last_hidden_state
    gates = PruningGates(model, units=("head",))
    with torch.no_grad():
        for g in gates.gates.values():
            g.log_alpha.fill_(30.0)  # every mask value 1 - 4e-11
        opened = model(x).last_hidden_state
        torch.testing.assert_close(opened, plain)
        gates.gates["layer_1_head"].log_alpha.fill_(-30.0)  # every head of layer 1 zeroed
        closed = model(x).last_hidden_state
    assert (closed - plain).abs().max() > 1e-3
    gates.remove_hooks()
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, plain)


def test_training_mode_samples_masks_with_gradients():
    model = tiny_hubert().train()
    gates = PruningGates(model)
    with torch.no_grad():  # gates half open (clamped samples of open gates have no gradient)
        for gate in gates.gates.values():
            gate.log_alpha.zero_()
    torch.manual_seed(0)
    for _ in range(4):  # a fresh sample each forward; a sample clamped to 0 or 1 has no gradient
        model(hubert_input()).last_hidden_state.pow(2).mean().backward()
    for key, gate in gates.gates.items():
        assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0, key


def test_hubert_conv_gates_only_where_removal_is_exact():
    gated = PruningGates(tiny_hubert()).gates
    assert [k for k in gated if k.startswith("conv_")] == [f"conv_{j}" for j in range(7)]
    # the projection's layer norm mixes the last conv layer's channels: not gated
    gated = PruningGates(tiny_hubert(feat_proj_layer_norm=True)).gates
    assert [k for k in gated if k.startswith("conv_")] == [f"conv_{j}" for j in range(6)]
    with pytest.raises(ValueError, match="feat_extract_norm='layer'"):
        PruningGates(tiny_hubert(feat_extract_norm="layer"))
    assert "conv_0" not in PruningGates(tiny_hubert(), units=("head", "interm")).gates
    with pytest.raises(ValueError, match="unknown prunable unit 'layer'"):
        PruningGates(tiny_hubert(), units=("head", "layer"))
    with pytest.raises(ValueError, match="WhisperEncoder or HubertModel"):
        PruningGates(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("build", [tiny_whisper_encoder, tiny_hubert])
def test_expected_params_with_open_gates_is_the_real_count(build):
    model = build()
    gates = PruningGates(model)
    real = sum(p.numel() for p in model.parameters())
    assert gates.original_params == real
    full = {k: float(g.n) for k, g in gates.gates.items()}
    assert expected_params(model, gates, full).item() == real
    with torch.no_grad():
        for g in gates.gates.values():
            g.log_alpha.fill_(100.0)
    assert expected_params(model, gates).item() == pytest.approx(real, abs=1e-3)


def test_expected_params_by_hand_on_whisper():
    model = tiny_whisper_encoder()
    gates = PruningGates(model)
    real = sum(p.numel() for p in model.parameters())
    # layer 0 keeps 2.5 heads, conv1 keeps 10 channels, the rest stays
    kept = {k: float(g.n) for k, g in gates.gates.items()}
    kept.update(layer_0_head=2.5, conv_0=10.0)
    # a head: q (64 + 1) x 16, k 64 x 16, v (64 + 1) x 16, out_proj 16 x 64 columns
    per_head = 65 * 16 + 64 * 16 + 65 * 16 + 16 * 64
    # a conv1 channel: 80 x 3 weights + bias; and conv2's 64 x 3 weights reading it
    per_channel = 80 * 3 + 1 + 64 * 3
    want = real - 1.5 * per_head - 54 * per_channel
    assert expected_params(model, gates, kept).item() == pytest.approx(want)


def test_expected_params_is_differentiable():
    model = tiny_hubert()
    gates = PruningGates(model)
    expected_params(model, gates).backward()
    for key, gate in gates.gates.items():
        assert gate.log_alpha.grad is not None and (gate.log_alpha.grad > 0).all(), key


def test_sparsity_loss_and_target_warmup():
    assert target_sparsity(0, 0.5, 100) == 0.0
    assert target_sparsity(25, 0.5, 100) == pytest.approx(0.125)
    assert target_sparsity(100, 0.5, 100) == 0.5
    assert target_sparsity(500, 0.5, 100) == 0.5
    assert target_sparsity(3, 0.75, 0) == 0.75
    with pytest.raises(ValueError, match="target sparsity"):
        target_sparsity(0, 1.0, 10)
    s = expected_sparsity(torch.tensor(600.0), 1000)
    assert s.item() == pytest.approx(0.4)
    loss = sparsity_loss(s, 0.5, torch.tensor(2.0), torch.tensor(3.0))
    assert loss.item() == pytest.approx(2 * -0.1 + 3 * 0.01)


def test_lambdas_are_learnt_by_gradient_ascent():
    model = torch.nn.Linear(2, 2)
    log_alpha = torch.nn.Parameter(torch.zeros(3))
    lagrangian = Lagrangian()
    groups = param_groups(model.parameters(), [log_alpha], lagrangian, lr=0.1, reg_lr=0.1)
    optimizer = torch.optim.AdamW(groups)
    # expected sparsity below the target: descent on L would lower λ1; ascent raises the
    # penalty of the gap, i.e. moves λ1 against the sign of (ŝ - t)
    for _ in range(3):
        optimizer.zero_grad()
        s = torch.sigmoid(log_alpha).mean()  # 0.5
        lagrangian(s, 0.8).backward()
        optimizer.step()
    assert lagrangian.lambda1.item() < 0  # dL/dλ1 = ŝ - t < 0: ascent lowers it
    assert lagrangian.lambda2.item() > 0  # dL/dλ2 = (ŝ - t)² > 0: ascent raises it
    # so the loss λ1 (ŝ - t) + λ2 (ŝ - t)² is positive and shrinks as ŝ rises to t
    assert lagrangian(torch.tensor(0.5), 0.8).item() > lagrangian(torch.tensor(0.7), 0.8).item()


@pytest.fixture
def one_thread():
    """Tiny models train far faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_distillation_with_the_sparsity_loss_prunes_toward_the_target(one_thread):
    from speechdistill.prune.remove import prune_model

    teacher = tiny_whisper_encoder()
    student = tiny_whisper_encoder().train()  # the same weights: a copy of the teacher
    gates = PruningGates(student)
    lagrangian = Lagrangian()
    groups = param_groups(
        student.parameters(), gates.parameters(), lagrangian, lr=1e-3, reg_lr=0.05
    )
    optimizer = torch.optim.AdamW(groups)
    x = whisper_input(4)
    with torch.no_grad():
        target = teacher(x).last_hidden_state
    torch.manual_seed(0)
    start = None
    for step in range(120):
        s_hat = expected_sparsity(expected_params(student, gates), gates.original_params)
        start = s_hat.item() if start is None else start
        distill = (student(x).last_hidden_state - target).abs().mean()
        loss = distill + lagrangian(s_hat, target_sparsity(step, 0.5, 20))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert start < 0.1 and s_hat.item() > start + 0.2  # the constraint pulled ŝ toward 0.5
    student.eval()
    kept = {k: float(v) for k, v in gates.kept_counts().items()}
    want = expected_params(student, gates, kept).item()
    prune_model(student, gates)
    assert sum(p.numel() for p in student.parameters()) == want < 0.8 * gates.original_params


def test_layer_maps_start_at_the_identity_and_see_pruning():
    from speechdistill.prune.distill import LayerMaps
    from speechdistill.train.losses import layerwise_distill_loss

    teacher = tiny_hubert()
    student = tiny_hubert()  # a copy of the teacher
    x = hubert_input()
    maps = LayerMaps([0, 1, 2], 32, 32)
    with torch.no_grad():
        t = teacher(x, output_hidden_states=True).hidden_states
        s = student(x, output_hidden_states=True).hidden_states
        before = layerwise_distill_loss(maps(s), [t[i] for i in (0, 1, 2)])
        assert before.l1.abs().max() == 0  # identity maps on a copy: no L1 to start with
        gates = PruningGates(student, units=("head",))
        gates.gates["layer_0_head"].log_alpha.fill_(-10.0)
        s = student(x, output_hidden_states=True).hidden_states
        after = layerwise_distill_loss(maps(s), [t[i] for i in (0, 1, 2)])
    assert after.l1[0] == 0 and after.l1[1] > 0 and after.l1[2] > 0  # layer 0 precedes the heads
    with pytest.raises(ValueError, match="layer 2 asked for"):
        LayerMaps([2], 32, 32)(s[:2])
