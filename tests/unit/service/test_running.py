"""When waiting requests join the running decode: at once, or with a few more."""

import time
from types import SimpleNamespace

from service.collect import ServiceRate
from service.health import RuntimeHealth
from service.running import RunningLane


class Quiet:
    def __getattr__(self, name):
        return lambda *args: None


def lane(max_rows: int = 16) -> RunningLane:
    return RunningLane(
        max_rows=max_rows,
        observer=Quiet(),
        health=RuntimeHealth(max_failures=3, backoff_s=(0.5, 30.0), on_probe=lambda ok: None),
        rate=ServiceRate(),
    )


def waiting(count: int, age_s: float = 0.0) -> list[SimpleNamespace]:
    return [SimpleNamespace(enqueued=time.monotonic() - age_s) for _ in range(count)]


def test_nothing_running_joins_at_once():
    assert lane().join_now(waiting(1), room=16)


def test_a_lone_arrival_waits_a_few_steps_for_company_while_rows_run():
    running = lane()
    running._rows["someone"] = (SimpleNamespace(), 0.0)
    running.step_s = 0.05
    assert not running.join_now(waiting(1), room=15)  # fresh: wait for more
    assert running.join_now(waiting(4), room=15)  # a quarter of the batch: join
    assert running.join_now(waiting(1, age_s=0.2), room=15)  # waited 4 steps: join
    assert running.join_now(waiting(1), room=1)  # it fills the free rows: join


def test_the_mode_decides_which_models_join(tiny_store):
    from explain.types import ExplainJob
    from service.running import AUTO_MIN_D_MODEL
    from tests.integration.test_runtime import ITEM, engine_for

    engine = engine_for(tiny_store.store_dir, tiny_store.name)  # d_model 64
    assert engine.info.d_model < AUTO_MIN_D_MODEL
    greedy = SimpleNamespace(engine=engine, prepared=engine.prepare(ExplainJob("u", (), ITEM)))
    beams = SimpleNamespace(engine=engine, prepared=engine.prepare(ExplainJob("u", (), ITEM, 8, 2)))

    def lane_in(mode: str) -> RunningLane:
        return RunningLane(max_rows=4, mode=mode, observer=Quiet(), health=None, rate=None)

    assert lane_in("on").accepts(greedy) and not lane_in("on").accepts(beams)
    assert not lane_in("off").accepts(greedy)
    assert not lane_in("auto").accepts(greedy)  # too small a model for `auto`
