"""Physical removal of pruned units (pruned model == masked model, parameter count == the
expected count of the hard masks) and saving / loading pruned models (speechdistill.prune)."""

from __future__ import annotations

import json

import pytest
import torch
from prune_helpers import (
    hubert_input,
    scramble_gates,
    tiny_hubert,
    tiny_whisper_encoder,
    whisper_input,
)

from speechdistill.prune.gates import PruningGates, calibrate_sparsity, expected_params
from speechdistill.prune.io import load_pruned, save_pruned
from speechdistill.prune.remove import EmptyAttention, prune_model

CASES = {
    "whisper": (tiny_whisper_encoder, whisper_input),
    "hubert": (tiny_hubert, hubert_input),
}


def _pruned(kind: str, units=("conv", "head", "interm")):
    build, inputs = CASES[kind]
    model = build()
    gates = PruningGates(model, units)
    scramble_gates(gates)
    x = inputs()
    with torch.no_grad():
        masked = model(x).last_hidden_state
    kept = gates.kept_counts()
    want_params = expected_params(model, gates, {k: float(v) for k, v in kept.items()}).item()
    structure = prune_model(model, gates)
    return model, x, masked, kept, want_params, structure


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pruned_model_computes_the_masked_model(kind):
    model, x, masked, kept, want_params, structure = _pruned(kind)
    # the scramble left some units in every gate and removed others
    sizes = {"whisper": (4, 128, 64), "hubert": (2, 48, 16)}[kind]
    assert structure["num_heads"] == [kept["layer_0_head"], 0]
    assert structure["ffn_dim"] == [0, kept["layer_1_interm"]]
    assert 0 < kept["layer_1_interm"] < sizes[1] and 0 < kept["conv_0"] < sizes[2]
    assert structure["conv_channels"][0] == kept["conv_0"]
    # layer 1 lost every head: its attention block is gone, its output the out_proj bias
    layers = model.layers if kind == "whisper" else model.encoder.layers
    attn = layers[1].self_attn if kind == "whisper" else layers[1].attention
    assert isinstance(attn, EmptyAttention)
    # and layer 0 every FFN neuron
    fc1 = layers[0].fc1 if kind == "whisper" else layers[0].feed_forward.intermediate_dense
    assert fc1.weight.shape[0] == 0
    with torch.no_grad():
        pruned = model(x).last_hidden_state
    torch.testing.assert_close(pruned, masked, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == want_params
    # the hooks are gone: the gates no longer touch the model
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


def test_removal_folds_mask_values_into_weights():
    # every head of layer 0 kept with mask values in (0, 1): they scale out_proj's columns
    model = tiny_whisper_encoder()
    gates = PruningGates(model, units=("head",))
    with torch.no_grad():
        gates.gates["layer_0_head"].log_alpha.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        gates.gates["layer_1_head"].log_alpha.fill_(30.0)
    mask = gates.gates["layer_0_head"].deterministic_mask()
    assert (mask > 0).all() and (mask < 1).all()
    before = model.layers[0].self_attn.out_proj.weight.detach().clone()
    prune_model(model, gates)
    after = model.layers[0].self_attn.out_proj.weight.detach()
    torch.testing.assert_close(after, before * mask.repeat_interleave(16))
    # nothing removed, every layer keeps its heads and FFN: a plain transformers config
    assert not hasattr(model.config, "pruning")


@pytest.mark.parametrize(
    "overrides, units",
    [
        # HuBERT Base's layout: the projection's layer norm keeps the last conv layer whole
        ({"feat_proj_layer_norm": True}, ("conv", "head", "interm")),
        # HuBERT Large's: pre-norm layers, a layer-norm CNN (no channel gates)
        (
            {
                "do_stable_layer_norm": True,
                "feat_extract_norm": "layer",
                "feat_proj_layer_norm": True,
            },
            ("head", "interm"),
        ),
    ],
)
def test_other_hubert_layouts_prune_exactly(overrides, units, tmp_path):
    model = tiny_hubert(**overrides)
    gates = PruningGates(model, units)
    scramble_gates(gates)
    x = hubert_input()
    with torch.no_grad():
        masked = model(x).last_hidden_state
    kept = {k: float(v) for k, v in gates.kept_counts().items()}
    want = expected_params(model, gates, kept).item()
    prune_model(model, gates)
    assert sum(p.numel() for p in model.parameters()) == want
    loaded = load_pruned(save_pruned(model, tmp_path / "pruned"))
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_save_and_load_pruned_round_trip(kind, tmp_path):
    model, x, _, _, _, structure = _pruned(kind)
    with torch.no_grad():
        pruned = model(x).last_hidden_state
    out = save_pruned(model, tmp_path / "pruned", {"target_sparsity": 0.5})
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == ["config.json", "model.safetensors", "prune.json"]  # no pickles
    config = json.loads((out / "config.json").read_text())
    assert config["pruning"]["num_heads"] == structure["num_heads"]
    assert config["pruning"]["ffn_dim"] == structure["ffn_dim"]
    if kind == "hubert":  # HuBERT's config lists every conv layer's channels itself
        assert config["conv_dim"] == structure["conv_channels"]
    info = json.loads((out / "prune.json").read_text())
    assert info["num_params"] == sum(p.numel() for p in model.parameters())
    assert info["target_sparsity"] == 0.5
    loaded = load_pruned(out)
    assert (
        type(loaded).__name__
        == {"whisper": "PrunedWhisperEncoder", "hubert": "PrunedHubertModel"}[kind]
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).last_hidden_state, pruned, rtol=1e-6, atol=1e-6)
    # the base transformers class refuses the resized weights instead of loading them wrongly
    with pytest.raises(RuntimeError, match="mismatched_sizes"):
        type(model).from_pretrained(out)


def test_uniform_pruning_saves_a_plain_transformers_model(tmp_path):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    model = tiny_whisper_encoder()
    gates = PruningGates(model, units=("interm",))
    with torch.no_grad():  # every layer keeps neurons 0-39 of 128, with mask values < 1
        for gate in gates.gates.values():
            gate.log_alpha.copy_(torch.cat([torch.full((40,), 6.0), torch.full((88,), -9.0)]))
    x = whisper_input()
    with torch.no_grad():
        masked = model(x).last_hidden_state
    prune_model(model, gates)
    assert model.config.encoder_ffn_dim == 40 and not hasattr(model.config, "pruning")
    out = save_pruned(model, tmp_path / "plain")
    assert "pruning" not in json.loads((out / "config.json").read_text())
    plain = WhisperEncoder.from_pretrained(out).eval()
    assert type(load_pruned(out)) is WhisperEncoder
    with torch.no_grad():
        torch.testing.assert_close(plain(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)


def test_bad_pruning_records_are_refused(tmp_path):
    model, *_ = _pruned("whisper")
    out = save_pruned(model, tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    config["pruning"]["num_heads"] = [9, 0]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="layer 0 9 heads"):
        load_pruned(out)
    config["pruning"]["num_heads"] = [1]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="1 head counts and 2 FFN sizes for 2 layers"):
        load_pruned(out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_pruned(tmp_path / "other")
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_pruned(tmp_path / "missing")


def test_a_conv_layer_losing_every_channel_is_an_error():
    model = tiny_hubert()
    gates = PruningGates(model, units=("conv",))
    with torch.no_grad():
        gates.gates["conv_2"].log_alpha.fill_(-10.0)
    with pytest.raises(ValueError, match="conv layer 2 would lose all its channels"):
        prune_model(model, gates)


def test_a_pruned_model_can_be_gated_again():
    # layer 0 without heads: a second round (or the final distillation) still finds its units
    model = tiny_whisper_encoder()
    gates = PruningGates(model, units=("head",))
    with torch.no_grad():
        gates.gates["layer_0_head"].log_alpha.fill_(-10.0)
        gates.gates["layer_1_head"].log_alpha.fill_(30.0)
    prune_model(model, gates)
    again = PruningGates(model)
    assert "layer_0_head" not in again.gates and again.gates["layer_1_head"].n == 4
    full = {k: float(g.n) for k, g in again.gates.items()}
    assert expected_params(model, again, full).item() == sum(p.numel() for p in model.parameters())


ALL_UNITS = ("conv", "head", "interm", "attlayer", "ffnlayer")


def _close_blocks(gates) -> None:
    """Layer 0 loses its attention block, layer 1 its FFN block; the other two block gates stay
    open with values in (0, 1)."""
    with torch.no_grad():
        gates.gates["layer_0_attlayer"].log_alpha.fill_(-10.0)
        gates.gates["layer_1_ffnlayer"].log_alpha.fill_(-10.0)
        gates.gates["layer_1_attlayer"].log_alpha.fill_(2.0)
        gates.gates["layer_0_ffnlayer"].log_alpha.fill_(1.5)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_block_gates_remove_whole_blocks(kind, tmp_path):
    build, inputs = CASES[kind]
    model = build()
    gates = PruningGates(model, ALL_UNITS)
    assert gates.gates["layer_0_attlayer"].n == 1 and gates.gates["layer_1_ffnlayer"].n == 1
    scramble_gates(gates, seed=3)
    with torch.no_grad():  # only the block gates remove whole blocks here
        gates.gates["layer_1_head"].log_alpha.fill_(3.0)
        gates.gates["layer_0_interm"].log_alpha.normal_(0.0, 3.0)
    _close_blocks(gates)
    x = inputs()
    with torch.no_grad():
        masked = model(x).last_hidden_state
    kept = {k: float(v) for k, v in gates.kept_counts().items()}
    assert kept["layer_0_attlayer"] == 0 and kept["layer_1_attlayer"] == 1
    want = expected_params(model, gates, kept).item()
    structure = prune_model(model, gates)
    assert structure["no_attention"] == [0] and structure["no_ffn"] == [1]
    assert structure["num_heads"][0] == 0 and structure["ffn_dim"][1] == 0
    assert structure["num_heads"][1] > 0 and structure["ffn_dim"][0] > 0
    layers = model.layers if kind == "whisper" else model.encoder.layers
    attn = layers[0].self_attn if kind == "whisper" else layers[0].attention
    assert isinstance(attn, EmptyAttention) and attn.out_proj.bias is None
    fc2 = layers[1].fc2 if kind == "whisper" else layers[1].feed_forward.output_dense
    assert fc2.bias is None and fc2.weight.shape[1] == 0
    assert sum(p.numel() for p in model.parameters()) == want
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)
    out = save_pruned(model, tmp_path / "pruned")
    record = json.loads((out / "config.json").read_text())["pruning"]
    assert record["no_attention"] == [0] and record["no_ffn"] == [1]
    loaded = load_pruned(out)
    assert sum(p.numel() for p in loaded.parameters()) == want
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)
    # a removed block gets no gate in a second round; the kept ones do
    again = PruningGates(loaded, ALL_UNITS)
    assert "layer_0_attlayer" not in again.gates and "layer_1_ffnlayer" not in again.gates
    assert "layer_1_attlayer" in again.gates and "layer_0_ffnlayer" in again.gates
    full = {k: float(g.n) for k, g in again.gates.items()}
    assert expected_params(loaded, again, full).item() == want


def test_expected_params_with_block_gates_by_hand():
    model = tiny_whisper_encoder()
    gates = PruningGates(model, ALL_UNITS)
    real = sum(p.numel() for p in model.parameters())
    kept = {k: float(g.n) for k, g in gates.gates.items()}
    # layer 0: half an attention block of 2.5 heads; layer 1: a quarter of an FFN of 100 neurons
    kept.update(layer_0_head=2.5, layer_0_attlayer=0.5, layer_1_interm=100.0, layer_1_ffnlayer=0.25)
    per_head = 65 * 16 + 64 * 16 + 65 * 16 + 16 * 64
    per_neuron = 64 + 1 + 64  # fc1's row and bias, fc2's column
    attn_full, ffn_full = 4 * per_head + 64, 128 * per_neuron + 64  # + out_proj's / fc2's bias
    want = (
        real
        - attn_full + 0.5 * (2.5 * per_head + 64)
        - ffn_full + 0.25 * (100 * per_neuron + 64)
    )  # fmt: skip
    assert expected_params(model, gates, kept).item() == pytest.approx(want)
    # a block gate alone (no head gates) scales the whole block
    only = PruningGates(model, ("attlayer",))
    closed = {"layer_0_attlayer": 0.0, "layer_1_attlayer": 1.0}
    assert expected_params(model, only, closed).item() == pytest.approx(real - attn_full)


def test_a_record_removing_a_block_that_keeps_units_is_refused(tmp_path):
    model = tiny_whisper_encoder()
    gates = PruningGates(model, ("attlayer",))
    with torch.no_grad():
        gates.gates["layer_0_attlayer"].log_alpha.fill_(-10.0)
    prune_model(model, gates)
    out = save_pruned(model, tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    assert config["pruning"]["no_attention"] == [0] and "no_ffn" not in config["pruning"]
    config["pruning"]["no_attention"] = [1]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match="removes layer 1's whole block in no_attention but gives it 4 heads"
    ):
        load_pruned(out)


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_calibration_meets_the_target_and_keeps_the_learnt_ranking(target):
    model = tiny_whisper_encoder()
    gates = PruningGates(model, ("head", "interm"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for gate in gates.gates.values():
            gate.log_alpha.copy_(torch.randn(gate.n, generator=g) * 2 + 1)
    before = gates.deterministic_masks()
    x = whisper_input()

    def sparsity(offset: float) -> float:
        gates.set_count_offset(offset)
        kept = {k: float(v) for k, v in gates.kept_counts().items()}
        return 1 - expected_params(model, gates, kept).item() / gates.original_params

    start = sparsity(0.0)
    grid = [sparsity(c) for c in torch.linspace(-10, 10, 801).tolist()]
    offset, achieved = calibrate_sparsity(model, gates, target)
    # the closest sparsity any common offset reaches (a head is 5 % of this model, a neuron
    # 0.16 %), closer than the masks' own
    assert abs(achieved - target) <= min(abs(s - target) for s in grid) + 1e-9
    assert abs(achieved - target) < min(abs(start - target), 0.03)
    after = gates.deterministic_masks()
    for key, mask in after.items():
        kept, was = mask != 0, before[key] != 0
        # the offset moves every gate's count the same way; the units still go in log_alpha order
        assert (kept <= was).all() if offset < 0 else (kept >= was).all(), key
        both = kept & was
        torch.testing.assert_close(mask[both], before[key][both])  # kept values unchanged
    with torch.no_grad():
        masked = model(x).last_hidden_state
    kept = {k: float(v) for k, v in gates.kept_counts().items()}
    want = expected_params(model, gates, kept).item()
    prune_model(model, gates)
    params = sum(p.numel() for p in model.parameters())
    assert params == want and 1 - params / gates.original_params == pytest.approx(achieved)
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, masked, rtol=1e-5, atol=1e-5)
