"""A few steps of fine-tuning on a tiny model lower the loss; resume continues the same run."""

import json
import math

import pytest
import torch

from explain.input_format import InputConfig
from training.finetune import IGNORE_INDEX, StudentExample, collate, train_student
from training.finetune_setup import StudentShape, TrainConfig
from training.modeling import UserAwareBart
from training.tokenization import train_bpe

TEMPLATES = [
    "<item> is a <g1> film you will like .",
    "Fans of <s1> should try <item> .",
    "<item> comes from the <dec> .",
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["item: film history: drama comedy you will like fans should try comes from the"] * 20
    return train_bpe(texts, vocab_size=300)


def examples(tokenizer, count=48):
    out = []
    for k in range(count):
        user = k % 3 + 1  # each user always gets "their" template: learnable only via W_u
        ids = tokenizer.encode(f"item: film number {k % 7} history: drama comedy")
        out.append(StudentExample(ids, user, tokenizer.encode(TEMPLATES[user - 1])))
    return out


def config(**overrides):
    base = {
        "shape": StudentShape(d_model=32, layers=1, heads=2, ffn=64, max_positions=64, dropout=0.0),
        "epochs": 3,
        "batch_size": 8,
        "lr": 3e-3,
        "user_lr": 3e-2,
        "seed": 1,
        "threads": 1,
    }
    return TrainConfig(**{**base, **overrides})


def test_collate_pads_labels_with_ignore_index(tokenizer):
    batch = collate(examples(tokenizer, 2)[:2], tokenizer.pad_id, torch.device("cpu"))
    lengths = [len(e.labels) for e in examples(tokenizer, 2)]
    assert batch["labels"].shape[1] == max(lengths)
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    assert batch["attention_mask"].sum() == sum(len(e.input_ids) for e in examples(tokenizer, 2))


def test_training_lowers_the_loss_and_keeps_the_unknown_user_at_zero(tokenizer, tmp_path):
    data = examples(tokenizer)
    result = train_student(
        data,
        data[:12],
        tokenizer=tokenizer,
        user_rows={"a": 1, "b": 2, "c": 3},
        input_config=InputConfig(max_input_tokens=64),
        config=config(epochs=6),
        out_dir=tmp_path,
        progress=False,
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.7  # seen: 5.56 -> 3.26
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]
    model = UserAwareBart.load(result.best_dir)
    assert torch.count_nonzero(model.user_embeddings.weight[0]) == 0
    assert torch.count_nonzero(model.user_embeddings.weight[1]) > 0


def run_options(tokenizer, **overrides):
    return {
        "tokenizer": tokenizer,
        "user_rows": {"a": 1, "b": 2, "c": 3},
        "input_config": InputConfig(max_input_tokens=64),
        "progress": False,
        "config": config(**overrides),
    }


class StopAfter(list):
    """Training data that interrupts the run once `limit` examples have been read."""

    def __init__(self, items, limit):
        super().__init__(items)
        self.limit, self.reads = limit, 0

    def __getitem__(self, index):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def test_an_interrupted_run_resumes_from_its_last_epoch_and_ends_the_same(tokenizer, tmp_path):
    data = examples(tokenizer)
    kwargs = run_options(tokenizer, epochs=3)
    whole = train_student(data, data[:12], out_dir=tmp_path / "whole", **kwargs)
    with pytest.raises(KeyboardInterrupt):  # dies half-way through epoch 2
        train_student(
            StopAfter(data, len(data) * 3 + 5), data[:12], out_dir=tmp_path / "cut", **kwargs
        )
    state = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert state["progress"]["epoch"] == 1 and state["progress"]["groups_done"] == 0
    resumed = train_student(data, data[:12], out_dir=tmp_path / "cut", **kwargs)
    assert len(resumed.history) == 3
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-4)


def test_the_no_user_ablation_never_uses_the_user_table(tokenizer, tmp_path):
    data = examples(tokenizer, 16)
    result = train_student(
        data,
        data[:8],
        tokenizer=tokenizer,
        user_rows={"a": 1, "b": 2, "c": 3},
        input_config=InputConfig(max_input_tokens=64),
        config=config(epochs=1, use_users=False),
        out_dir=tmp_path,
        progress=False,
    )
    model = UserAwareBart.load(result.best_dir)
    assert not model.use_users and torch.count_nonzero(model.user_embeddings.weight) == 0


def weights(directory):
    return UserAwareBart.load(directory).state_dict()


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_run_checkpointed_every_n_steps_resumes_mid_epoch_exactly(
    tokenizer, tmp_path, grad_accum
):
    data = examples(tokenizer)
    kwargs = run_options(tokenizer, epochs=2, save_every_steps=1, grad_accum=grad_accum)
    whole = train_student(data, data[:12], out_dir=tmp_path / "whole", **kwargs)
    with pytest.raises(KeyboardInterrupt):  # dies in the middle of epoch 2
        train_student(
            StopAfter(data, len(data) * 3 + 20), data[:12], out_dir=tmp_path / "cut", **kwargs
        )
    state = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert state["progress"]["epoch"] == 1 and state["progress"]["groups_done"] > 0
    resumed = train_student(data, data[:12], out_dir=tmp_path / "cut", **kwargs)
    keys = ("step", "train_loss", "valid_loss")
    assert [a[k] for a in resumed.history for k in keys] == pytest.approx(
        [b[k] for b in whole.history for k in keys]
    )
    cut, full = weights(tmp_path / "cut" / "last"), weights(tmp_path / "whole" / "last")
    assert all(torch.allclose(cut[k], full[k], atol=1e-6) for k in full)
    steps = 6 // grad_accum  # 48 examples in batches of 8, per epoch
    assert resumed.history[-1]["step"] == 2 * steps


def test_validation_every_n_steps_and_accumulation(tokenizer, tmp_path):
    data = examples(tokenizer)
    options = run_options(tokenizer, epochs=2, grad_accum=3, eval_every_steps=1)
    result = train_student(data, data[:12], out_dir=tmp_path, **options)
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]  # 6 batches / 3 = 2 per epoch
    assert result.best_valid_loss == min(h["valid_loss"] for h in result.history)


def test_bf16_mixed_precision_trains_on_the_cpu(tokenizer, tmp_path):
    data = examples(tokenizer, 16)
    options = run_options(tokenizer, epochs=1, mixed_precision="bf16", device="cpu")
    result = train_student(data, data[:8], out_dir=tmp_path / "bf16", **options)
    assert math.isfinite(result.history[-1]["train_loss"])
    # The weights stay fp32 (autocast computes in bf16); the next run may use another mode.
    assert UserAwareBart.load(result.best_dir).user_embeddings.weight.dtype == torch.float32
    again = train_student(
        data, data[:8], out_dir=tmp_path / "fp32", **run_options(tokenizer, epochs=1)
    )
    assert math.isfinite(again.history[-1]["train_loss"])
