"""Grounded judge: scores a video of a synthetic prompt against the renderer's ground truth, no model needed.

It answers the same 13 rubric dimensions on the same 1-5 scale as the VLM judges, from measurable video
statistics. The reference is the ground-truth clip rendered from the prompt's scene spec at the video's size and
passed through the same measurements, so a perfect video scores 5 and encoding noise cancels out.

Measurements (per frame):
- colour segmentation by the known palette: a pixel belongs to an entity colour when it is within
  `COLOUR_TOL` of that colour (or of its darker texture shade), nearer to it than to every other palette colour,
  and nearer to it than to the ground-truth background at that pixel;
- blobs: connected components per colour (fragments within one pixel joined), at least `MIN_AREA_FRAC` of the
  smallest entity's area and at least `MIN_DENSITY` solid (scattered noise pixels are not an entity);
- identity: each prompt entity is matched to one blob per frame (Hungarian) by shape (centroid-aligned IoU with
  the entity's ground-truth mask) plus a colour penalty, so a blob of the wrong colour but the right shape is
  still the same entity with a broken colour binding.

Dimension -> statistic (value in [0, 1] unless noted) -> 1-5 by the cuts in `CUTS` (value >= cut):
  entity_count          blob count per colour vs the ground truth's, median over frames -> the paper's exact-count scale
  person_appearance     colour/shape binding of PERSON_* entities: aligned IoU if the colour is right, 0.3 x IoU if
                        not, 0 if absent (median over frames, mean over entities); None without persons
  object_appearance     the same for OBJECT_* entities
  spatial_arrangement   mean of (a) pairwise left/right/above/below relations that hold in every ground-truth frame
                        and still hold, (b) centroids within 0.12 of the ground-truth path (fractions of min(H, W))
  action_completion     end position within 0.06 (full credit) .. 0.3 (none) of the ground-truth end
  scene_style           mean abs colour error of background pixels on a 4x4 grid (0-255; lower is better, own cuts)
  motion_prompt_alignment  per step of a moving entity: cos(step, truth step) if it moves at least 25% as far, else 0
  motion_completeness   agreement of the moving / still pattern with the truth over the steps of moving entities
  motion_amplitude      min(r, 1/r) of path length r = generated / truth (still entities: stays within 0.08)
  temporal_consistency  mean of presence over frames, area continuity, no teleports, no background flicker
  physical_plausibility mean of rigid shape between frames and no unexplained accelerations
  camera_motion         integer global background shift per step vs the truth's (within 1 px)
  interaction_correctness  meet: approach, contact at the end; follow: follower behind the leader at a steady gap;
                        5 when the prompt has no interaction (the paper's single-subject rule)
Entities never found at all count in entity_count and appearance only, so each corruption moves the dimensions
it breaks. Rotation direction is not measured (shapes with isotropic moments give no reliable angle at 64 px).

Modules: segment.py (palette labels, blobs, aligned IoU), reference.py (the measured ground truth and entity
matching), scores.py (the 13 dimensions and `grounded_scores`).
"""

from evaluation.grounded.reference import Reference, Tracks, build_reference, match_entities, mp4_roundtrip, render_reference
from evaluation.grounded.scores import CUTS, SCENE_ERR_CUTS, grounded_scores, grounded_ta_mq, to_scale
from evaluation.grounded.segment import aligned_iou, blobs_in_frame, colour_labels

__all__ = [
    "CUTS", "SCENE_ERR_CUTS", "Reference", "Tracks", "aligned_iou", "blobs_in_frame",
    "build_reference", "colour_labels", "grounded_scores", "grounded_ta_mq", "match_entities", "mp4_roundtrip", "render_reference", "to_scale",
]
