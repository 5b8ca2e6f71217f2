from training.cli import _config, build_parser


def config_of(*argv):
    return _config(build_parser().parse_args(list(argv)))


def test_run_options_reach_the_pipeline_config():
    config = config_of(
        "run", "--dataset", "movielens", "--data-dir", "d", "--sparse-every", "0", "--no-ablation"
    )
    assert config.dataset == "movielens" and config.data_dir == "d"
    assert config.sparse_every == 0 and not config.ablation
    assert not config.quality_gate  # the bars are calibrated on the synthetic data only


def test_build_default_keeps_the_sparse_requests():
    config = config_of("build-default", "--users", "24")
    assert config.num_users == 24 and config.sparse_every == 8
