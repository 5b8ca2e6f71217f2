"""HFTeacher on tiny random models saved to disk and loaded through `from_pretrained`."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from explain.items import Item  # noqa: E402
from training.data.types import Sample  # noqa: E402
from training.prompts import DEFAULT_TEMPLATE_TEXT, format_teacher_prompt  # noqa: E402
from training.teachers import HFTeacher, TeacherFailure, TeacherRequest  # noqa: E402
from training.teachers.hf import resolve_dtype  # noqa: E402

SPECIALS = ["<pad>", "</s>", "<unk>"]
CORPUS = [
    DEFAULT_TEMPLATE_TEXT,
    "Alien is a great sci-fi film, just like the ones you watched.",
    "Since you liked Star Wars, you will enjoy this one too.",
]


def save_tokenizer(directory):
    words = sorted({w for text in CORPUS for w in text.replace("{", " ").replace("}", " ").split()})
    vocab = {token: k for k, token in enumerate(SPECIALS + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(directory)
    return len(vocab)


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-t5")
    vocab_size = save_tokenizer(directory)
    config = transformers.T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    vocab_size = save_tokenizer(directory)
    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=512,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def requests(n):
    history = (Item("Star Wars (1977)", "1", {"genres": ["Sci-Fi"]}),)
    out = []
    for k in range(n):
        sample = Sample(
            f"u{k}",
            history if k % 2 else (),
            Item(f"Alien ({1979 + k})", "2", {"genres": ["Sci-Fi"]}),
            k,
        )
        # Prompts of different lengths, so padding matters.
        prompt = format_teacher_prompt(DEFAULT_TEMPLATE_TEXT, sample) + " great" * k
        out.append(TeacherRequest(sample, prompt))
    return out


def test_seq2seq_model_answers_every_request(seq2seq_dir):
    teacher = HFTeacher(seq2seq_dir, device="cpu", batch_size=2, max_new_tokens=6)
    assert teacher.is_encoder_decoder and teacher.dtype == torch.float32
    results = teacher.explain(requests(5))
    assert len(results) == 5 and all(isinstance(r, str) for r in results)
    assert all(len(str(r).split()) <= 6 for r in results)
    assert teacher.name == f"hf:{seq2seq_dir}"
    # Greedy: the same request gives the same answer, whatever batch it is in.
    assert teacher.explain(requests(5)[:1]) == results[:1]


def test_causal_model_returns_only_the_continuation(causal_dir):
    teacher = HFTeacher(causal_dir, device="cpu", batch_size=3, max_new_tokens=5)
    assert not teacher.is_encoder_decoder and teacher.tokenizer.padding_side == "left"
    batch = requests(4)
    results = teacher.explain(batch)
    assert len(results) == 4 and all(isinstance(r, str) for r in results)
    # The prompt (about a hundred words) was stripped: only the new tokens are left.
    assert all(len(str(text).split()) <= 5 for text in results)
    # Left padding: a prompt gives the same answer alone as in a padded batch.
    assert [teacher.explain([request])[0] for request in batch] == results


def test_a_failing_batch_becomes_one_failure_per_request(seq2seq_dir, monkeypatch):
    teacher = HFTeacher(seq2seq_dir, device="cpu", batch_size=2, max_new_tokens=2)

    def broken(prompts):
        raise RuntimeError("kernel crashed")

    monkeypatch.setattr(teacher, "_generate", broken)
    results = teacher.explain(requests(3))
    assert len(results) == 3 and all(
        isinstance(r, TeacherFailure) and "kernel crashed" in r.reason for r in results
    )


def test_dtype_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cuda) == torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", cpu)


def test_prompts_are_batched_longest_first_and_answered_in_order(seq2seq_dir, monkeypatch):
    teacher = HFTeacher(seq2seq_dir, device="cpu", batch_size=2, max_new_tokens=2)
    seen = []

    def echo(prompts):
        seen.append([len(p) for p in prompts])
        return [f"len {len(p)}" for p in prompts]

    monkeypatch.setattr(teacher, "_generate", echo)
    batch = requests(5)
    results = teacher.explain(batch)
    assert results == [f"len {len(r.prompt)}" for r in batch]  # back in input order
    lengths = [n for group in seen for n in group]
    assert lengths == sorted(lengths, reverse=True) and [len(g) for g in seen] == [2, 2, 1]


def test_the_prompt_budget_counts_with_the_teacher_tokenizer(seq2seq_dir):
    teacher = HFTeacher(seq2seq_dir, device="cpu", max_input_tokens=120)
    budget = teacher.prompt_budget
    assert budget is not None and budget.max_prompt_tokens == 120
    prompt = requests(1)[0].prompt
    assert budget.count(prompt) == len(teacher.tokenizer(prompt)["input_ids"])
    # Nothing is cut by the tokenizer any more: the whole prompt reaches the model.
    long = prompt + " great" * 200
    assert budget.count(long) > 120
    (answer,) = teacher.explain([TeacherRequest(requests(1)[0].sample, long)])
    assert isinstance(answer, str)
