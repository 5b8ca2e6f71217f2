from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.limits import DEFAULT_LIMITS, RequestLimits
from service.schemas import ExplainRequest, build_request_models

pytestmark = pytest.mark.anyio


def test_items_may_be_titles_or_objects_and_ids_are_normalised() -> None:
    request = ExplainRequest.model_validate(
        {
            "user_id": 4217,
            "history": [
                "  E.T. the Extra-Terrestrial (1982) ",
                {"item_id": 260, "title": "Star Wars"},
            ],
            "recommended_item": {
                "item_id": "2011",
                "title": "Back to the Future (1985)",
                "attributes": {"genres": ["Comedy", "Sci-Fi"], "year": 1985},
            },
        }
    )
    job = request.to_job()
    assert job.user_id == "4217"
    assert [i.title for i in job.history] == ["E.T. the Extra-Terrestrial (1982)", "Star Wars"]
    assert [i.item_id for i in job.history] == [None, "260"]
    assert job.item.features == ("Comedy", "Sci-Fi") and job.item.year == 1985
    assert (job.max_new_tokens, job.num_beams) == (DEFAULT_LIMITS.default_max_new_tokens, 1)
    # Explicit null options are the defaults too.
    again = ExplainRequest.model_validate(
        {"user_id": "u", "recommended_item": "X", "options": None}
    )
    assert again.to_job().max_new_tokens == DEFAULT_LIMITS.default_max_new_tokens


def test_options_override_the_defaults() -> None:
    request = ExplainRequest.model_validate(
        {"user_id": "u", "recommended_item": "X", "options": {"max_new_tokens": 12, "num_beams": 3}}
    )
    job = request.to_job()
    assert (job.max_new_tokens, job.num_beams, job.history) == (12, 3, ())


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"user_id": True, "recommended_item": "X"}, ("user_id",)),
        ({"user_id": "  ", "recommended_item": "X"}, ("user_id",)),
        ({"user_id": "u" * 129, "recommended_item": "X"}, ("user_id",)),
        ({"user_id": 1.5, "recommended_item": "X"}, ("user_id",)),
        ({"user_id": "u", "recommended_item": 5}, ("recommended_item",)),
        ({"user_id": "u", "recommended_item": {"item_id": "1"}}, ("recommended_item", "title")),
        (
            {"user_id": "u", "recommended_item": {"title": "X", "attributes": {"a": {"b": 1}}}},
            ("recommended_item", "attributes", "a"),
        ),
        (
            {"user_id": "u", "recommended_item": {"title": "X", "attributes": {"a": [[1]]}}},
            ("recommended_item", "attributes", "a"),
        ),
        (
            {"user_id": "u", "recommended_item": {"title": "X", "genres": []}},
            ("recommended_item", "genres"),
        ),
        (
            {"user_id": "u", "recommended_item": "X", "options": {"num_beams": "2"}},
            ("options", "num_beams"),
        ),
        ({"user_id": "u", "recommended_item": "X", "extra": 1}, ("extra",)),
    ],
)
def test_rejects_malformed_requests(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        ExplainRequest.model_validate(data)
    assert caught.value.errors()[0]["loc"] == loc


def test_bounded_models_use_the_configured_limits() -> None:
    tight = build_request_models(RequestLimits(max_history=2, max_title_chars=5, max_attributes=1))
    loose = build_request_models(RequestLimits(max_history=60))
    history = [f"t{i}" for i in range(3)]
    with pytest.raises(ValidationError, match="at most 2 items"):
        tight.explain.model_validate({"user_id": "u", "history": history, "recommended_item": "X"})
    with pytest.raises(ValidationError, match="at most 5 characters"):
        tight.explain.model_validate({"user_id": "u", "recommended_item": "X" * 6})
    with pytest.raises(ValidationError, match="at most 1 attributes"):
        tight.explain.model_validate(
            {"user_id": "u", "recommended_item": {"title": "X", "attributes": {"a": 1, "b": 2}}}
        )
    long_history = [f"t{i}" for i in range(55)]
    assert (
        len(
            loose.explain.model_validate(
                {"user_id": "u", "history": long_history, "recommended_item": "X"}
            ).history
        )
        == 55
    )
    with pytest.raises(ValidationError):
        ExplainRequest.model_validate(
            {"user_id": "u", "history": long_history, "recommended_item": "X"}
        )
    # A bounded request still is an ExplainRequest, so code typed against it works.
    assert issubclass(tight.explain, ExplainRequest)


def test_bounded_options_default_and_bounds() -> None:
    models = build_request_models(
        RequestLimits(default_max_new_tokens=20, max_new_tokens_limit=30, max_num_beams=2)
    )
    assert models.options().max_new_tokens == 20
    # A request without options gets the app's default, from the one place it is defined.
    bare = models.explain.model_validate({"user_id": "u", "recommended_item": "X"})
    assert bare.to_job().max_new_tokens == 20
    with pytest.raises(ValidationError):
        models.options(max_new_tokens=31)
    with pytest.raises(ValidationError):
        models.options(num_beams=3)
    assert models.options(num_beams=2).num_beams == 2


def test_json_schema_shows_both_item_forms_and_the_example() -> None:
    schema = build_request_models(DEFAULT_LIMITS).explain.model_json_schema()
    item = schema["$defs"]["ItemIn"]
    assert [branch["type"] for branch in item["anyOf"]] == ["string", "object"]
    assert item["anyOf"][0]["maxLength"] == DEFAULT_LIMITS.max_title_chars
    example = schema["examples"][0]
    assert example["recommended_item"]["title"] == "Back to the Future (1985)"
    assert example["history"][0] == "E.T. the Extra-Terrestrial (1982)"


# --- through HTTP: every rejection is a 422 that names the field --------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"history": ["ok", {"title": "   "}]}, "history.1.title"),
        ({"history": ["x"] * 51}, "history"),
        ({"options": {"temperature": 0.7}}, "options.temperature"),
        ({"options": {"num_beams": 5}}, "options.num_beams"),
        ({"options": {"num_beams": 0}}, "options.num_beams"),
        ({"options": {"max_new_tokens": 97}}, "options.max_new_tokens"),
        ({"recommended_item": {"title": "X" * 301}}, "recommended_item.title"),
        ({"user_id": None}, "user_id"),
    ],
)
async def test_http_rejections_name_the_param(
    serve_app: Any, example: dict[str, Any], change: dict[str, Any], param: str
) -> None:
    async with serve_app() as (_, client):
        response = await client.post("/v1/explanations", json=example | change)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")


async def test_http_limits_follow_settings(serve_app: Any, example: dict[str, Any]) -> None:
    async with serve_app(max_history=1, max_num_beams=2) as (app, client):
        too_long = await client.post("/v1/explanations", json=example)  # 2 history items
        beams = await client.post(
            "/v1/explanations", json=example | {"history": [], "options": {"num_beams": 3}}
        )
        schema = app.openapi()["components"]["schemas"]
    assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "history"
    assert beams.status_code == 422 and beams.json()["error"]["param"] == "options.num_beams"
    assert schema["ExplainRequest"]["properties"]["history"]["maxItems"] == 1
    assert schema["ExplainOptions"]["properties"]["num_beams"]["maximum"] == 2


async def test_missing_field_and_many_problems(serve_app: Any) -> None:
    async with serve_app() as (_, client):
        response = await client.post("/v1/explanations", json={"history": [""]})
    error = response.json()["error"]
    assert response.status_code == 422
    assert error["param"] in {"user_id", "history.0.title", "recommended_item"}
    assert "more problems" in error["message"]
