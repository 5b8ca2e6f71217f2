"""The bounds of a request: the one home of every request limit and default.

`Settings` extends `RequestLimits`, so each limit is a `PRISM_*` setting, and the schemas
take a `RequestLimits` (the settings object itself, in the service) to bound the request
models: the values are defined here once and never copied field by field. Decoding defaults
come from `explain.explainer.DecodeSettings`, the same place evaluation and parity read them.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from explain.explainer import DecodeSettings

_DECODE = DecodeSettings()


class RequestLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_history: int = Field(
        default=50, ge=0, description="Most history items a request may carry."
    )
    max_title_chars: int = Field(
        default=300, ge=1, description="Longest item title accepted, in characters."
    )
    max_attributes: int = Field(
        default=32, ge=0, description="Most attribute keys an item may carry."
    )
    max_attribute_chars: int = Field(
        default=300,
        ge=1,
        description="Longest attribute value (a string, or each string in a list), in characters.",
    )
    max_slate_size: int = Field(
        default=32, ge=1, description="Most requests in one `POST /v1/explanations/batch`."
    )
    default_max_new_tokens: int = Field(
        default=_DECODE.max_new_tokens,
        ge=1,
        description="Tokens generated when a request sets no `max_new_tokens`.",
    )
    max_new_tokens_limit: int = Field(
        default=96,
        ge=1,
        description="Largest `max_new_tokens` a request may ask for; a model with fewer "
        "decoder positions is refused at load.",
    )
    max_num_beams: int = Field(
        default=4, ge=1, description="Largest `num_beams` a request may ask for."
    )

    @model_validator(mode="after")
    def _limits_agree(self) -> Self:
        if self.default_max_new_tokens > self.max_new_tokens_limit:
            raise ValueError(
                f"default_max_new_tokens ({self.default_max_new_tokens}) exceeds "
                f"max_new_tokens_limit ({self.max_new_tokens_limit})"
            )
        return self


DEFAULT_LIMITS = RequestLimits()
