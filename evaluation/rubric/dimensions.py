"""The paper's 13 VLM-rubric dimensions (docs/evaluation.md): names, groups, short labels and 1-5 scale texts.

TA (text alignment) has 6 dimensions, MQ (motion quality) 7. One judge call scores one group. The VLM judges
and the grounded judge use exactly these names and the same 1-5 scale, so every table is keyed the same way.
"""

from __future__ import annotations

from typing import Literal

Group = Literal["TA", "MQ"]

TA_DIMS: tuple[str, ...] = (
    "entity_count",
    "person_appearance",
    "object_appearance",
    "spatial_arrangement",
    "action_completion",
    "scene_style",
)
MQ_DIMS: tuple[str, ...] = (
    "motion_prompt_alignment",
    "motion_completeness",
    "motion_amplitude",
    "temporal_consistency",
    "physical_plausibility",
    "camera_motion",
    "interaction_correctness",
)
GROUPS: dict[str, tuple[str, ...]] = {"TA": TA_DIMS, "MQ": MQ_DIMS}
ALL_DIMS: tuple[str, ...] = TA_DIMS + MQ_DIMS

# Column labels of the paper's Tables 5 and 6.
SHORT: dict[str, str] = {
    "entity_count": "EntCnt",
    "person_appearance": "PrsApp",
    "object_appearance": "ObjApp",
    "spatial_arrangement": "Spatial",
    "action_completion": "ActCmp",
    "scene_style": "Scene",
    "motion_prompt_alignment": "MtPrm",
    "motion_completeness": "MtCmp",
    "motion_amplitude": "MtAmp",
    "temporal_consistency": "TmpCns",
    "physical_plausibility": "PhyPlu",
    "camera_motion": "Cam",
    "interaction_correctness": "Inter",
}

SCORE_MIN, SCORE_MAX = 1, 5

TA_SCALE = (
    "5 = fully matches the description; 4 = mostly matches with small differences; "
    "3 = partially matches, or some items are clearly wrong; 2 = mostly wrong; 1 = no match or unrecognisable."
)
ENTITY_COUNT_SCALE = (
    "5 = exact count; 4 = off by 1 in total; 3 = off by 2; 2 = off by 3-4; 1 = off by 5 or more."
)
MQ_SCALE = (
    "5 = fully met (correct subject, object, direction and timing where relevant); "
    "4 = mostly met, with small attribute or magnitude problems; 3 = partly met, with clear local failures; "
    "2 = several or large failures, only a faint hint of the requirement; 1 = fails entirely or does the opposite."
)

# What each dimension asks (our wording of the paper's Boxes B and D).
QUESTIONS: dict[str, str] = {
    "entity_count": "Does the video show exactly {num_persons} person(s) and {num_objects} object(s) "
    "as listed in [Characters & Objects]?",
    "person_appearance": "Do the people's clothing, hair, age/gender and accessories match [Characters & Objects]?",
    "object_appearance": "Do the objects' shape, colour, material and type match [Characters & Objects]?",
    "spatial_arrangement": "Are the positions (left / right / centre / between / behind / in front) "
    "as described in [Shot Narrative]?",
    "action_completion": "Are the narrated actions actually performed and finished?",
    "scene_style": "Do setting, lighting, colour palette and mood match [Scene & Style]?",
    "motion_prompt_alignment": "Do the narrated subject-verb-object-direction motions happen as written?",
    "motion_completeness": "Does each motion have a clear onset, full execution and a clean end? "
    "Penalise twitching, frozen frames and in-place looping.",
    "motion_amplitude": "Is the amount of motion plausible for the scene? Penalise near-static jitter as well as "
    "exaggerated shaking, flicker and cartoonish distortion.",
    "temporal_consistency": "Are identities preserved over time? Penalise flicker, ghosting, teleporting, identity "
    "swaps, extra, missing, displaced or duplicated limbs, scrambled faces, melting or tearing edges, colour bleeding.",
    "physical_plausibility": "Does motion respect physics (gravity, inertia, collisions, rigid vs soft bodies, "
    "contact)? Penalise joints bent past their limits, rigid things wobbling like cloth, clipping through solids, "
    "floating or sinking feet, fluid or smoke moving against gravity.",
    "camera_motion": "Does the camera do what [Shot Narrative] specifies (push-in, pull-out, pan, tilt, tracking, "
    "orbit, handheld) with the right type, direction and pace? If nothing is specified it should stay stable.",
    "interaction_correctness": "Do multi-subject interactions happen with the right contact point and "
    "approach -> contact -> completion timing for both parties? If the description has a single subject, "
    "return 5 with the reason 'no multi-subject interaction'.",
}


def group_of(dim: str) -> Group:
    """The group (TA or MQ) a dimension belongs to; a clear error for an unknown name."""
    if dim in TA_DIMS:
        return "TA"
    if dim in MQ_DIMS:
        return "MQ"
    raise KeyError(f"unknown rubric dimension {dim!r}; known: {', '.join(ALL_DIMS)}")


def scale_for(dim: str) -> str:
    """The 1-5 scale text a dimension is scored on (entity_count has its own exact-count scale)."""
    if dim == "entity_count":
        return ENTITY_COUNT_SCALE
    return TA_SCALE if group_of(dim) == "TA" else MQ_SCALE


def count_error_score(predicted: int, expected: int) -> int:
    """The paper's exact-count scale: 0 off -> 5, 1 -> 4, 2 -> 3, 3-4 -> 2, 5 or more -> 1."""
    off = abs(int(predicted) - int(expected))
    if off == 0:
        return 5
    if off == 1:
        return 4
    if off == 2:
        return 3
    if off <= 4:
        return 2
    return 1
