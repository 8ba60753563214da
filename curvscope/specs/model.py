"""The model architecture of a study (``model``).

Torch-free: the API imports it. Re-exported from ``curvscope.models.mlp``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelSpec(BaseModel):
    """The architecture of the classifier under study."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(
        default=[64, 32],
        min_length=0,
        max_length=8,
        description="Widths of the hidden layers (depth = number of hidden layers).",
    )
    activation: Literal["gelu", "relu", "tanh"] = Field(
        default="gelu", description="Non-linearity after every hidden layer."
    )
    bias: bool = Field(default=True, description="Whether every linear layer has a bias.")

    def model_post_init(self, __context) -> None:  # noqa: D401 - pydantic hook
        for width in self.hidden:
            if not 1 <= width <= 4096:
                raise ValueError(f"hidden widths must be between 1 and 4096, got {width}")
