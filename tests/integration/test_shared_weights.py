"""The tied token embedding is stored once and loaded once for both graphs."""

import shutil

import numpy as np
import onnx
import pytest

from explain import artifacts
from explain.session import open_sessions
from training.shared_weights import share_token_embedding


def _table_entry(path):
    graph = onnx.load(str(path), load_external_data=False).graph
    [table] = [t for t in graph.initializer if t.name == artifacts.SHARED_EMBEDDING]
    return table, {e.key: e.value for e in table.external_data}


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    from training.export import export_onnx
    from training.modeling import UserAwareBart

    out = tmp_path_factory.mktemp("shared") / "onnx"
    export_onnx(UserAwareBart.load(tiny_model_dir), out)
    return out


def test_both_graphs_point_at_one_file_holding_the_table(exported, tiny_model_dir):
    from training.modeling import UserAwareBart

    spec = artifacts.OnnxSpec.load(exported)
    data = exported / artifacts.shared_embedding_file(artifacts.FP32)
    table = np.load(data)
    weights = UserAwareBart.load(tiny_model_dir).bart.model.shared.weight.detach().numpy()
    assert table.shape == (spec.vocab_size, spec.d_model)
    np.testing.assert_array_equal(table, weights)
    for name in artifacts.variant_files(artifacts.FP32):
        tensor, entry = _table_entry(exported / name)
        assert tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.raw_data
        assert entry["location"] == data.name and int(entry["length"]) == table.nbytes


def test_sessions_share_one_copy_and_compute_what_inline_graphs_compute(exported, tmp_path):
    # The same graphs with the table inline in each (what an export without sharing writes).
    inline = tmp_path / "inline"
    inline.mkdir()
    for name in artifacts.variant_files(artifacts.FP32):
        onnx.save(onnx.load(str(exported / name)), str(inline / name))  # loads external data
    names = artifacts.variant_files(artifacts.FP32)
    shared = open_sessions(
        [exported / n for n in names],
        choice="cpu",
        intra_op_threads=1,
        shared_files={
            artifacts.SHARED_EMBEDDING: exported / artifacts.shared_embedding_file("fp32")
        },
    )
    alone = open_sessions([inline / n for n in names], choice="cpu", intra_op_threads=1)
    value = shared[0].shared[artifacts.SHARED_EMBEDDING]
    assert shared[1].shared[artifacts.SHARED_EMBEDDING] is value  # one buffer, both sessions
    spec = artifacts.OnnxSpec.load(exported)
    ids = np.array([[0, 5, 9, 17, 2]])
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "user_embeds": np.zeros((1, spec.d_model), np.float32),
    }
    got, want = shared[0].run(feeds), alone[0].run(feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_sharing_again_keeps_the_same_table(exported, tmp_path):
    copy = tmp_path / "onnx"
    shutil.copytree(exported, copy)
    data = copy / artifacts.shared_embedding_file(artifacts.FP32)
    before = np.load(data)
    assert share_token_embedding(copy, artifacts.FP32) is True
    np.testing.assert_array_equal(np.load(data), before)


def test_tables_that_differ_are_not_shared(exported, tmp_path):
    copy = tmp_path / "onnx"
    shutil.copytree(exported, copy)
    decoder = copy / artifacts.DECODER_FILE
    model = onnx.load(str(decoder))
    [table] = [t for t in model.graph.initializer if t.name == artifacts.SHARED_EMBEDDING]
    values = onnx.numpy_helper.to_array(table).copy()
    values[3] += 1.0  # an untied decoder embedding
    table.CopyFrom(onnx.numpy_helper.from_array(values, table.name))
    onnx.save(model, str(decoder))
    encoder = copy / artifacts.ENCODER_FILE
    onnx.save(onnx.load(str(encoder)), str(encoder))  # inline again
    assert share_token_embedding(copy, artifacts.FP32) is False
    assert not (copy / artifacts.shared_embedding_file(artifacts.FP32)).exists()
    for path in (encoder, decoder):
        graph = onnx.load(str(path), load_external_data=False).graph
        assert not any(t.external_data for t in graph.initializer)
