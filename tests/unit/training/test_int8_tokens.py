"""Per-token int8 MatMuls: the rewrite, its accuracy, and that a row never sees its batch-mates."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.int8_tokens import (
    WEIGHT_LEVELS,
    matmuls_feeding,
    quantise_per_token,
    quantise_tables,
    quantise_weight,
)

K, N = 64, 48


def _graph(rng):
    """x -> MatMul(A) -> a, x -> MatMul(B) -> b, a -> MatMul(C) -> c (three constant weights)."""
    weights = {
        k: (rng.standard_normal((K, K if k == "A" else N)) * 0.1).astype(np.float32) for k in "ABC"
    }
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["a"], name="mm_a"),
        helper.make_node("MatMul", ["x", "B"], ["b"], name="mm_b"),
        helper.make_node("MatMul", ["a", "C"], ["c"], name="mm_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", K])],
        [
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", "tokens", N]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", "tokens", N]),
        ],
        [numpy_helper.from_array(w, k) for k, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model, weights


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["b", "c"], {"x": x})


def test_weights_are_seven_bit_per_output_channel():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((K, N)).astype(np.float32)
    weight[:, 3] = 0.0  # a dead channel must not divide by zero
    q, scale = quantise_weight(weight)
    assert q.dtype == np.int8 and scale.shape == (N,)
    assert np.abs(q).max() == WEIGHT_LEVELS
    assert np.all(q[:, 3] == 0) and np.isfinite(scale).all()
    # every weight is within half a step of its channel's grid
    assert np.all(np.abs(q * scale - weight) <= scale / 2 + 1e-7)


def test_rewrite_is_close_to_fp32_and_quantises_a_shared_input_once():
    rng = np.random.default_rng(1)
    model, _ = _graph(rng)
    x = rng.standard_normal((3, 5, K)).astype(np.float32)
    expected = _run(model, x)
    assert quantise_per_token(model) == 3
    ops = [n.op_type for n in model.graph.node]
    assert "MatMul" not in ops and ops.count("MatMulIntegerToFloat") == 3
    assert ops.count("Abs") == 2  # x once (read by A and B), a once
    assert not {"A", "B", "C"} & {t.name for t in model.graph.initializer}
    for got, want in zip(_run(model, x), expected, strict=True):
        assert np.abs(got - want).max() < 0.03 * np.abs(want).max()


def test_a_token_gets_the_same_result_whoever_shares_its_batch():
    rng = np.random.default_rng(2)
    model, _ = _graph(rng)
    quantise_per_token(model)
    x = rng.standard_normal((4, 6, K)).astype(np.float32)
    x[1] *= 1000.0  # an outlier batch-mate would coarsen a per-call scale for everyone
    together = _run(model, x)
    for row in (0, 2):
        alone = _run(model, x[row : row + 1])
        for t, a in zip(together, alone, strict=True):
            assert np.array_equal(t[row], a[0])


def test_excluded_matmuls_keep_their_float_weights():
    rng = np.random.default_rng(3)
    model, _ = _graph(rng)
    assert quantise_per_token(model, exclude={"mm_c"}) == 2
    kept = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert [n.name for n in kept] == ["mm_c"]
    assert "C" in {t.name for t in model.graph.initializer}
    onnx.checker.check_model(model)


def test_tables_become_int8_rows_with_their_own_scales():
    rng = np.random.default_rng(4)
    table = (rng.standard_normal((50, K)) * 0.05).astype(np.float32)
    table[7] *= 100.0  # one loud row does not coarsen the others
    graph = helper.make_graph(
        [helper.make_node("Gather", ["T", "ids"], ["rows"], name="lookup", axis=0)],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "tokens", K])],
        [numpy_helper.from_array(table, "T")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    assert quantise_tables(model) == 1
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert stored["T"].dtype == np.int8 and stored["T.scale"].shape == (50, 1)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 7, 49, 3]], dtype=np.int64)
    [rows] = session.run(["rows"], {"ids": ids})
    want = table[ids]
    for got_row, want_row in zip(rows[0], want[0], strict=True):
        assert np.abs(got_row - want_row).max() <= np.abs(want_row).max() / 254 + 1e-7


def test_a_table_read_whole_elsewhere_stays_float():
    table = np.ones((10, K), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["T", "ids"], ["rows"], axis=0),
            helper.make_node("Transpose", ["T"], ["Tt"]),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [2, K]),
            helper.make_tensor_value_info("Tt", TensorProto.FLOAT, [K, 10]),
        ],
        [numpy_helper.from_array(table, "T")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantise_tables(model) == 0
    assert model.graph.initializer[0].data_type == TensorProto.FLOAT


def test_a_bias_after_the_product_is_added_once_and_right():
    """ONNX Runtime 1.32 folds a bias `Add` into a fused `MatMulIntegerToFloat` and gets it
    wrong with per-token scales (about 60 % error): the rewrite must keep the bias its own."""
    rng = np.random.default_rng(5)
    weight = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "bias"], ["y"], name="add"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", N])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    quantise_per_token(model)
    x = rng.standard_normal((2, 40, K)).astype(np.float32)
    want = x @ weight + bias
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    [got] = session.run(["y"], {"x": x})
    assert np.abs(got - want).max() < 0.03 * np.abs(want).max()


def test_the_lm_head_is_the_matmul_feeding_the_logits():
    rng = np.random.default_rng(6)
    model, _ = _graph(rng)
    # c = a @ C and a = x @ A: only C feeds c directly; b is fed by B alone
    assert matmuls_feeding(model, "c") == {"mm_c"}
    assert matmuls_feeding(model, "b") == {"mm_b"}
    assert matmuls_feeding(model, "missing") == set()


def _tied_head(rng, vocab=300, width=32):
    """Gather(table, ids) + noise -> hidden [rows, width] -> MatMul(table^T) + bias -> logits."""
    table = rng.standard_normal((vocab, width)).astype(np.float32)
    bias = (rng.standard_normal((1, vocab)) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["looked_up"], axis=0, name="lookup"),
        helper.make_node("Add", ["looked_up", "noise"], ["hidden"], name="add_noise"),
        helper.make_node("MatMul", ["hidden", "head_weight"], ["scores"], name="lm_head"),
        helper.make_node("Add", ["scores", "bias"], ["logits"], name="add_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["rows"]),
            helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["rows", width]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", vocab])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.ascontiguousarray(table.T), "head_weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model, table, bias


def _logits(model, ids, noise):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"ids": ids, "noise": noise})[0]


def test_a_rescored_head_is_exact_on_its_candidates_and_keeps_the_argmax():
    from training.int8_tokens import quantise_table, rescore_head

    rng = np.random.default_rng(5)
    model, table, bias = _tied_head(rng)
    ids = rng.integers(0, table.shape[0], 64)
    noise = (rng.standard_normal((64, table.shape[1])) * 3).astype(np.float32)
    assert rescore_head(model, "lm_head", "logits", 8)
    quantise_per_token(model)  # the head's own product becomes approximate
    quantise_tables(model)  # the table (lookups and candidates) int8, a scale per row
    got = _logits(model, ids, noise)
    q, scale = quantise_table(table)
    rows = q.astype(np.float32) * scale  # what the int8 table holds
    hidden = rows[ids] + noise
    reference = hidden @ rows.T + bias  # the head on the int8 table, float activations
    top = np.argsort(-reference, axis=1)[:, :3]  # among the approximate top 8: rescored
    np.testing.assert_allclose(
        np.take_along_axis(got, top, axis=1),
        np.take_along_axis(reference, top, axis=1),
        rtol=1e-5,
        atol=1e-4,
    )
    assert np.array_equal(got.argmax(axis=1), reference.argmax(axis=1))
    # the approximate scores alone pick another token for some rows
    plain, _, _ = _tied_head(np.random.default_rng(5))
    quantise_per_token(plain)
    quantise_tables(plain)
    assert not np.array_equal(_logits(plain, ids, noise).argmax(axis=1), reference.argmax(axis=1))


def test_an_untied_head_is_not_rescored():
    from training.int8_tokens import rescore_head

    model, _, _ = _tied_head(np.random.default_rng(6))
    weight = next(t for t in model.graph.initializer if t.name == "head_weight")
    untied = numpy_helper.to_array(weight) + 1.0
    weight.CopyFrom(numpy_helper.from_array(untied, "head_weight"))
    before = model.SerializeToString()
    assert not rescore_head(model, "lm_head", "logits", 8)
    assert model.SerializeToString() == before


def test_tokens_round_to_the_bit_as_div_round_add_clip_cast():
    from training.int8_tokens import PREFIX, quantise_tokens

    width = 96
    graph = helper.make_graph(
        [],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", width])],
        [
            helper.make_tensor_value_info("t.u8", TensorProto.UINT8, None),
            helper.make_tensor_value_info("t.scale", TensorProto.FLOAT, None),
        ],
        [
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), f"{PREFIX}.eps"),
            numpy_helper.from_array(np.array(127.0, dtype=np.float32), f"{PREFIX}.levels"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{PREFIX}.one"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), f"{PREFIX}.zp"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    model.graph.node.extend(quantise_tokens("x", "t"))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 40, width)) * 5).astype(np.float32)
    x[0, 0] = 0.0  # an all-zero token: the scale floor, every value at the zero point
    x[1, 2, :4] = [0.5, -0.5, 1.5, 2.5]  # ties, with the token's peak set below
    x[1, 2, 4] = 127.0
    q, scale = session.run(["t.u8", "t.scale"], {"x": x})
    want_scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True) / np.float32(127.0), 1e-12)
    want = np.clip(np.rint(x / want_scale.astype(np.float32)) + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(scale, want_scale)
    np.testing.assert_array_equal(q, want)
    assert q.shape == x.shape and list(q[1, 2, :4]) == [128, 128, 130, 130]  # half to even
