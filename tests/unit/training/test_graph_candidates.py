"""The decoder's next-token candidates: a TopK over the logits, added last, taken off and put
back around the passes that rewrite the LM head, float32 scores whatever the logits' type."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from explain.artifacts import LOGITS, TOP_IDS, TOP_SCORES
from training.graph_candidates import add_candidates, remove_candidates

VOCAB, WIDTH = 50, 6


def _head(elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """hidden [rows, WIDTH] x table -> logits [rows, VOCAB] (in `elem`)."""
    dtype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    table = np.random.default_rng(0).normal(size=(WIDTH, VOCAB)).astype(dtype)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["hidden", "table"], [LOGITS], name="lm_head")],
        "head",
        [helper.make_tensor_value_info("hidden", elem, ["batch", WIDTH])],
        [helper.make_tensor_value_info(LOGITS, elem, ["batch", VOCAB])],
        [numpy_helper.from_array(table, "table")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, hidden: np.ndarray) -> dict[str, np.ndarray]:
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"hidden": hidden}), strict=True))


def test_the_candidates_are_the_best_logits_best_first_lower_id_first_among_ties():
    model = _head()
    add_candidates(model, 8)
    hidden = np.random.default_rng(1).normal(size=(5, WIDTH)).astype(np.float32)
    hidden[4] = 0.0  # every logit 0: the first 8 ids
    out = _run(model, hidden)
    want = np.argsort(-out[LOGITS], axis=1, kind="stable")[:, :8]
    assert out[TOP_IDS].dtype == np.int64 and out[TOP_SCORES].dtype == np.float32
    assert np.array_equal(out[TOP_IDS], want)
    assert np.array_equal(out[TOP_SCORES], np.take_along_axis(out[LOGITS], want, axis=1))
    assert out[TOP_IDS][4].tolist() == list(range(8))


def test_taken_off_and_put_back_they_come_last_once():
    model = _head()
    add_candidates(model, 8)
    assert remove_candidates(model) == 8
    assert remove_candidates(model) is None
    assert [o.name for o in model.graph.output] == [LOGITS]
    assert len(model.graph.initializer) == 1 and len(model.graph.node) == 1
    # a pass that rewrites what writes the logits: the candidates follow it when put back
    model.graph.node[0].output[0] = "approx"
    model.graph.node.append(helper.make_node("Relu", ["approx"], [LOGITS], name="after"))
    add_candidates(model, 8)
    add_candidates(model, 4)  # again: replaces, never duplicates
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Relu", "TopK"]
    assert [o.name for o in model.graph.output] == [LOGITS, TOP_SCORES, TOP_IDS]
    out = _run(model, np.ones((2, WIDTH), dtype=np.float32))
    assert out[TOP_IDS].shape == (2, 4)


def test_half_precision_logits_give_float32_scores_that_round_to_them():
    model = _head(TensorProto.FLOAT16)
    add_candidates(model, 5)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Cast", "TopK"]
    hidden = np.random.default_rng(2).normal(size=(3, WIDTH)).astype(np.float16)
    out = _run(model, hidden)
    assert out[TOP_SCORES].dtype == np.float32
    # On CPU, ONNX Runtime computes the half-precision MatMul in float32 and drops the
    # round trip through float16 before the TopK, so the scores may be finer than the
    # logits: they round to them (what `explain.steps.candidates_of` relies on).
    picked = np.take_along_axis(out[LOGITS], out[TOP_IDS], axis=1)
    assert np.array_equal(out[TOP_SCORES].astype(np.float16), picked)
    best = -np.sort(-out[LOGITS].astype(np.float32), axis=1)[:, :5]
    assert np.array_equal(picked.astype(np.float32), best)


def test_a_graph_without_logits_is_refused():
    model = _head()
    model.graph.output[0].name = "other"
    with pytest.raises(ValueError, match="no logits"):
        add_candidates(model, 4)


def _rescored_head(vocab: int = 300, width: int = 32) -> onnx.ModelProto:
    """A tied LM head (lookup, noise, MatMul by the table's transpose, bias) after the int8
    `per-token` recipe: its best 8 approximate scores per row rescored (`rescore_head`)."""
    from training.int8_tokens import quantise_per_token, quantise_tables, rescore_head

    rng = np.random.default_rng(5)
    table = rng.standard_normal((vocab, width)).astype(np.float32)
    bias = (rng.standard_normal((1, vocab)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["looked_up"], axis=0, name="lookup"),
            helper.make_node("Add", ["looked_up", "noise"], ["hidden"], name="add_noise"),
            helper.make_node("MatMul", ["hidden", "head_weight"], ["scores"], name="lm_head"),
            helper.make_node("Add", ["scores", "bias"], [LOGITS], name="add_bias"),
        ],
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["rows"]),
            helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["rows", width]),
        ],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["rows", vocab])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.ascontiguousarray(table.T), "head_weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    assert rescore_head(model, "lm_head", LOGITS, 8)
    quantise_per_token(model)
    quantise_tables(model)
    return model


def _run_head(model: onnx.ModelProto, rows: int = 64, vocab: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    feeds = {
        "ids": rng.integers(0, vocab, rows),
        "noise": (rng.standard_normal((rows, 32)) * 3).astype(np.float32),
    }
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def test_a_rescored_head_gives_its_candidates_from_its_own_widened_topk():
    from training.int8_tokens import HEAD_TOPK

    model = _rescored_head()
    plain = _run_head(model)[LOGITS]
    before = model.SerializeToString()
    add_candidates(model, 16)
    tops = [n for n in model.graph.node if n.op_type == "TopK"]
    # one pass over the vocabulary (the head's, now 8 + 16 wide) and one over the pool of 24
    assert [n.name for n in tops] == [HEAD_TOPK, "prism.candidates.TopK"]
    assert tops[1].input[0] == "prism.candidates.pool"
    out = _run_head(model)
    assert np.array_equal(out[LOGITS], plain)  # the logits are the rescored head's, as before
    assert out[TOP_IDS].shape == (64, 16) and out[TOP_IDS].dtype == np.int64
    logits = out[LOGITS]
    # the best 16 scores of the logits, best first, each the logit of its id
    np.testing.assert_array_equal(out[TOP_SCORES], -np.sort(-logits, axis=1)[:, :16])
    np.testing.assert_array_equal(out[TOP_SCORES], np.take_along_axis(logits, out[TOP_IDS], axis=1))
    # what `choose` relies on: nothing outside the candidates scores above the lowest of them
    for row in range(64):
        above = set(np.flatnonzero(logits[row] > out[TOP_SCORES][row].min()).tolist())
        assert above <= set(out[TOP_IDS][row].tolist())
    assert remove_candidates(model) == 16
    assert model.SerializeToString() == before  # taken off, the head is as it was


def test_a_rescored_head_too_narrow_for_the_pool_keeps_a_topk_over_the_logits():
    model = _rescored_head(vocab=20)
    add_candidates(model, 16)  # 8 rescored + 16 > 20 tokens
    assert [n.name for n in model.graph.node if n.op_type == "TopK"][-1] == (
        "prism.candidates.TopK"
    )
    assert next(n for n in model.graph.node if n.name == "prism.candidates.TopK").input[0] == (
        LOGITS
    )
    out = _run_head(model, vocab=20)
    np.testing.assert_array_equal(out[TOP_SCORES], -np.sort(-out[LOGITS], axis=1)[:, :16])
