from training.cli import _config, build_parser


def config_of(*argv):
    return _config(build_parser().parse_args(list(argv)))


def test_run_options_reach_the_pipeline_config():
    config = config_of(
        "run", "--dataset", "movielens", "--data-dir", "d", "--plain-requests", "--no-ablation"
    )
    assert config.dataset == "movielens" and config.data_dir == "d"
    assert not config.request_forms and not config.ablation
    assert not config.force  # the quality gate holds on every data set


def test_build_default_keeps_the_request_forms_and_can_be_forced():
    config = config_of("build-default", "--users", "24")
    assert config.num_users == 24 and config.request_forms and not config.force
    assert config_of("build-default", "--force").force
    assert config_of("run", "--force").force


def test_build_default_trains_again_on_a_missed_bar_and_run_does_not_unless_asked():
    assert config_of("build-default").attempts == 3
    assert config_of("build-default", "--attempts", "1").attempts == 1
    assert config_of("run").attempts == 1
    assert config_of("run", "--attempts", "2").attempts == 2


def test_teacher_flags_reach_the_teacher_and_the_prompt(tmp_path, monkeypatch):
    from training.distill_setup import make_teacher, prompt_budget, teacher_template
    from training.prompts import BUSINESS_TEMPLATE
    from training.teachers.openai import OpenAICompatibleTeacher

    prompt = tmp_path / "short.txt"
    prompt.write_text("History: {history}\nItem: {item_to_explain}\nWhy?\n")
    monkeypatch.setenv("TGI_KEY", "secret")
    config = config_of(
        "run", "--teacher", "openai:http://tgi:8080", "--teacher-model", "flan-t5-xxl",
        "--teacher-mode", "completions", "--teacher-concurrency", "128",
        "--teacher-api-key-env", "TGI_KEY", "--prompt-file", str(prompt),
        "--teacher-max-context", "512", "--teacher-max-new-tokens", "48",
    )  # fmt: skip
    teacher = make_teacher(config)
    assert isinstance(teacher, OpenAICompatibleTeacher)
    assert teacher.url == "http://tgi:8080/v1/completions" and teacher.concurrency == 128
    assert teacher._headers == {"Authorization": "Bearer secret"} and teacher.max_tokens == 48
    template = teacher_template(config)
    assert template.name == "short" and template.text.startswith("History: {history}")
    assert prompt_budget(config, teacher) is None  # no tokenizer given: prompts go as they are
    yelp = config_of("run", "--dataset", "yelp", "--data-dir", "d")
    assert teacher_template(yelp) is BUSINESS_TEMPLATE


def test_a_teacher_tokenizer_gives_a_budget(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from training.distill_setup import make_teacher, prompt_budget

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    config = config_of(
        "run", "--teacher", "openai:http://h", "--teacher-tokenizer", str(tmp_path),
        "--teacher-max-context", "100", "--teacher-max-new-tokens", "30",
    )  # fmt: skip
    budget = prompt_budget(config, make_teacher(config))
    assert budget is not None and budget.max_prompt_tokens == 70
    assert budget.count("a b c") == 3


def test_distill_takes_the_run_options_and_the_engine():
    config = config_of(
        "distill", "--dataset", "movielens", "--data-dir", "d", "--engine", "ray",
        "--workers", "3", "--shards", "6", "--ray-address", "auto",
    )  # fmt: skip
    assert config.dataset == "movielens" and config.distill_engine == "ray"
    assert (config.distill_workers, config.distill_shards, config.ray_address) == (3, 6, "auto")
    assert config_of("run").distill_engine == "local"
