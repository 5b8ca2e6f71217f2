"""The service's app with one precision variant's gate waived, for benchmarks only.

`make bench-peers` builds a random-weight model, on which no precision variant can pass its
agreement gate, so the real service refuses to serve int8 there. To measure what the serving
process costs with int8 graphs (speed, and the peak memory the issue's target is about), this
factory loads the service as `service.main:create_app` does, with the variant named in
`PRISM_BENCH_WAIVED_VARIANT` counted as servable, and a version whose parity check missed
served all the same: random weights repeat one token from near-equal logits, which another
CPU's float sums can tip (on the Intel AVX-512 host 2 of 48 rows differed at their first
token; the benchmark's results say so). Nothing in the service reads that variable: it takes
this module, started by name (`benchmarks.server.start_server(app=...)`), to waive a gate; a
deployment never does.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from fastapi import FastAPI

from service import loader
from service.main import create_app as service_app

WAIVED = "PRISM_BENCH_WAIVED_VARIANT"


def create_app() -> FastAPI:
    waived = os.environ[WAIVED]
    namespace = vars(loader)  # the name `service.loader` calls the loader by
    load = namespace["load_onnx_explainer"]

    def load_waived(*args: Any, servable: Any = (), **kwargs: Any) -> Any:
        return load(*args, servable=[*servable, waived], **kwargs)

    namespace["load_onnx_explainer"] = load_waived
    served = namespace["load_served_explainer"]

    def load_unproven(store: Any, version: Any, *args: Any, **kwargs: Any) -> Any:
        parity = version.manifest.parity
        if parity is not None and not parity.passed:
            passed = parity.model_copy(update={"passed": True})
            manifest = version.manifest.model_copy(update={"parity": passed})
            version = dataclasses.replace(version, manifest=manifest)
        return served(store, version, *args, **kwargs)

    namespace["load_served_explainer"] = load_unproven
    return service_app()
