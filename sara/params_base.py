"""The base of the typed params: strict, frozen pydantic models, the value types several sections share, and the
scene settings the clips and the lab corpus share (sara.config composes the sections; sara.params_lab holds the
lab-scale pretraining sections).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _wan_frame_count(v: int) -> int:
    if (v - 1) % 4:
        raise ValueError("must be 4k+1 (the Wan VAE compresses time 4x after the first frame)")
    return v


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):  # True == 1 in Python: a Literal of ints would otherwise take `true` for 1
        raise ValueError("must be an integer, not a boolean")
    return v


WanFrames = Annotated[int, AfterValidator(_wan_frame_count)]  # a frame count the Wan VAE accepts
ZeroStage = Annotated[Literal[0, 1, 2, 3], BeforeValidator(_not_bool)]
# sara/data/prompts: the 18 synthetic or real-world prompts, the 256 held-out synthetic scenes, or lab = synthetic
# followed by held-out (the qualitative grids read the 18, the intervals all 274)
PromptSetName = Literal["synthetic", "realworld", "heldout", "lab", "lab530"]


class StrictModel(BaseModel):
    """Base of every typed record (params sections, scene specs, captions, truth): unknown keys are errors, so a
    misspelt field never silently disappears, and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(StrictModel):
    """Base for every params section: a StrictModel whose types are strict too.

    Strict: `true` is not an integer, `'1e-4'` (a quoted string) is not a number, and every float must be
    finite unless its field says otherwise (`trd.tau: .inf` means uniform cross-frame weights)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class SceneParams(Section):
    """What the synthetic renderer draws, shared by the clips (`data`) and the lab corpus (`pretrain.corpus`): frame
    size and rate, how many foreground entities, how often they interact, are people, or the camera pans."""

    height: int = Field(64, ge=16)
    width: int = Field(64, ge=16)
    fps: int = Field(8, ge=1)
    min_entities: int = Field(1, ge=1, le=4)  # K range of foreground entities per clip
    max_entities: int = Field(4, ge=1, le=4)
    interaction_prob: float = Field(0.3, ge=0.0, le=1.0)  # chance that two entities interact (meet / follow)
    person_prob: float = Field(0.2, ge=0.0, le=1.0)  # chance that an entity is a stick figure (PERSON_k)
    pan_prob: float = Field(0.15, ge=0.0, le=1.0)  # chance that the camera pans slowly left or right

    @model_validator(mode="after")
    def _entity_range(self) -> "SceneParams":
        if self.min_entities > self.max_entities:
            raise ValueError("min_entities must be <= max_entities")
        return self

    @property
    def scene_options(self) -> dict[str, Any]:
        """Keywords of `sara.data.synthetic.random_spec`: one scene drawn under these settings."""
        return {"min_entities": self.min_entities, "max_entities": self.max_entities, "height": self.height,
                "width": self.width, "interaction_prob": self.interaction_prob, "person_prob": self.person_prob,
                "pan_prob": self.pan_prob}
