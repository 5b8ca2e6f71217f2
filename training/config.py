"""The offline pipeline's configuration, and the embedded default's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from explain.input_format import InputConfig
from training.finetune_setup import StudentShape, TrainConfig


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "prism-movies"
    dataset: str = "synthetic"  # synthetic | movielens | yelp
    data_dir: str | None = None  # for movielens / yelp
    num_users: int = 600  # synthetic users
    seed: int = 0
    teacher: str = "grounded"  # grounded | hf:<path or hub id> | openai:<base url>
    teacher_model: str = ""  # the model name an OpenAI-compatible endpoint serves
    teacher_mode: str = "chat"  # chat (/v1/chat/completions) | completions (/v1/completions)
    teacher_concurrency: int = 64  # requests in flight to an OpenAI-compatible endpoint
    teacher_api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding its key
    # The prompt budget of a remote teacher: its tokenizer (a tokenizer.json, or the folder
    # holding one) and context; without a tokenizer prompts are sent as they are. A local
    # HF teacher counts with its own tokenizer and limit.
    teacher_tokenizer: str | None = None
    teacher_max_context: int = 512  # FLAN-T5 was trained on 512-token inputs
    teacher_max_new_tokens: int = 64
    prompt_file: str | None = None  # a custom template; None: the dataset's default prompt
    # local: one process; ray: the samples of each split in `distill_shards` shards (by
    # sample id), distilled by `distill_workers` Ray actors into shard files.
    distill_engine: str = "local"
    distill_workers: int = 2
    distill_shards: int = 8
    ray_address: str | None = None  # None: a local Ray
    max_train_samples: int | None = None
    eval_samples: int = 800  # test requests scored per system (valid is capped the same)
    base_eval_samples: int = 200  # the untrained base generates to the limit: keep it small
    input: InputConfig = field(
        default_factory=lambda: InputConfig(max_history=50, max_input_tokens=160)
    )
    vocab_size: int = 3000  # ByteLevel BPE trained on the corpus (scratch base only)
    train: TrainConfig = field(default_factory=TrainConfig)
    ablation: bool = True  # also train "Prism w/o user"
    # Promote a version that misses a quality bar anyway (it is always published; without
    # `force` it is not promoted and the command exits non-zero).
    force: bool = False
    # Training attempts: when the full student misses a quality bar, train it again with the
    # next training seed (same data, tokenizer and ablation), up to this many times in all;
    # the first student that meets every bar is published (`training.pipeline`).
    attempts: int = 1
    max_new_tokens: int = 48
    anonymous_every: int = 10  # every Nth train request is also distilled with no user (0: off)
    # Requests rewritten as rankers send them: bare titles, catalogue sort forms, cold starts
    # (`training.data.sparse`); False keeps every request as the dataset has it.
    request_forms: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_config(seed: int = 0) -> PipelineConfig:
    """The embedded default: sized to build in under 15 minutes on two CPU cores.

    The input budget is small (96 tokens: the item, the evidence and the newest one or two
    history entries) because the evidence already summarises the whole 50-item history, and
    encoder length is what training time on a CPU is made of. Dropout is off: on this
    machine its masks cost an eighth of every step.
    """
    return PipelineConfig(
        seed=seed,
        num_users=500,  # ~13k training requests: two students in ~8 minutes
        # A safety net: a student that misses a bar (the recipe's result moves with the seed
        # and the CPU's float arithmetic) is trained again with the next seed.
        attempts=3,
        input=InputConfig(max_history=50, max_input_tokens=96),
        train=TrainConfig(
            shape=StudentShape(
                d_model=128, layers=2, heads=4, ffn=512, max_positions=160, dropout=0.0
            ),
            # 6 epochs at 1e-3, not 4 at 2e-3: at 2e-3 the students of seeds 1 and 2 stalled
            # (valid loss 0.066 and 0.119 after 4 epochs, against 0.034 for seed 0) and missed
            # bars, seed 2 with its wording collapsed; at 1e-3 for 6 epochs seeds 0-2 reach
            # 0.024-0.039 and meet every bar (seeds 1 and 2 scored against the old recipe's
            # ablation; README, *The embedded default model*).
            epochs=6,
            batch_size=64,
            lr=1e-3,
            # Each user row is updated only by that user's ~25 samples an epoch, against
            # every batch for the shared weights: it needs a larger step to be learnt.
            user_lr=2e-2,
            seed=seed,
            threads=2,
        ),
    )
