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
