"""Settings of `fieldkit generate`; each field's docstring is its command-line help."""
from __future__ import annotations

from dataclasses import dataclass

from fieldkit.errors import FieldkitError
from fieldkit.options import check_numbers
from fieldkit.guidance.schedules import TimestepSchedule

REPRESENTATIONS = ("gaussians", "field")
GUIDANCES = ("sds", "bsd", "bsd-auto", "vsd")
DEFAULT_STEPS = {"gaussians": 300, "field": 400}
DEFAULT_RESOLUTION = {"gaussians": 64, "field": 32}
DEFAULT_GUIDANCE_SCALE = {"sds": 20.0, "bsd": 20.0, "bsd-auto": None, "vsd": 7.5}
"""bsd-auto has no guidance scale: its balance between prompt and smoothing sets itself."""


@dataclass
class GenerateConfig:
    rep: str = "gaussians"
    """representation: gaussians (splats, DreamGaussian-style densification) or field (hash grid)"""
    guidance: str = "sds"
    """score-distillation loss: sds, bsd (balanced, PlacidDreamer's standard variant), bsd-auto (its
    auto-weighted variant, no guidance scale) or vsd (LoRA variational)"""
    steps: int | None = None
    """optimisation steps (default: 300 for gaussians, 400 for a field)"""
    seed: int = 0
    """random seed; a seed gives the same asset on CPU"""
    guidance_scale: float | None = None
    """classifier-free guidance, diffusers' convention eps_u + s (eps_c - eps_u); bsd's classifier : smoothing
    ratio (default: 20 for sds and bsd, 7.5 for vsd; bsd-auto takes none)"""
    views_per_step: int = 1
    """views rendered and guided per step"""
    resolution: int | None = None
    """render size in pixels, resized to the prior's resolution (default: 64 for gaussians, 32 for a field)"""
    schedule: str = "annealed"
    """timestep schedule: annealed (uniform, shrinking upper bound) or linear (falling, DreamGaussian)"""
    t_min: float = 0.02
    """lowest timestep, as a fraction of the prior's schedule"""
    t_max: float = 0.98
    """highest timestep, as a fraction of the prior's schedule"""
    anneal_to: float = 0.5
    """annealed schedule: the upper bound at the last step"""
    weighting: str = "sds"
    """w(t): sds (1 - alpha_bar_t, DreamFusion) or uniform"""
    view_prompts: bool = True
    """append front/side/back/overhead view to the prompt by camera direction"""
    negative_prompt: str = ""
    """prompt that classifier-free guidance steers away from (replaces the empty prompt)"""
    perp_neg: float = 0.0
    """Perp-Neg weight against the opposite view's prompt (0: off)"""
    random_background: float = 0.5
    """probability that a view is composited on a random colour instead of white"""
    lambertian: float = 0.0
    """probability of a lambertian-shaded view (normals from the rendered depth)"""
    textureless: float = 0.0
    """probability of a textureless (white albedo, shaded) view"""
    learning_rate_scale: float = 1.0
    """multiplies every learning rate of the representation"""
    final_lr_fraction: float = 0.1
    """learning rate at the last step, as a fraction of the first"""
    lora_rank: int = 4
    """vsd: rank of the LoRA adapters"""
    lora_learning_rate: float = 1e-3
    """vsd: learning rate of the LoRA adapters and camera embedding"""
    densify_grad_threshold: float = 0.002
    """gaussians: average screen-space gradient (NDC units) above which a splat is cloned or split"""
    clean: bool = True
    """gaussians: push rendered alpha to 0 or 1, prune floaters and splats that no view needs, and end with a
    sharpening phase (--no-clean: DreamGaussian's recipe alone)"""
    max_splats: int = 3000
    """gaussians: densification stops at this many splats (the torch rasterizer's time grows with them)"""
    checkpoint_seconds: float = 30.0
    """seconds between checkpoints"""
    preview_every: int = 25
    """steps between refreshes of DIR/preview.png"""
    turntable_frames: int = 24
    """frames of the turntable animation"""
    turntable_format: str = "gif"
    """gif or mp4"""
    turntable_resolution: int = 128
    """turntable frame size in pixels"""
    geometry_metrics: bool = True
    """built-in prior: score the asset's silhouette, depth, stray coverage and colour against the prompt's
    ground-truth shape over elevations 0-80 in metrics.json (about 15 s)"""

    def __post_init__(self):
        for name, value, choices in (("--rep", self.rep, REPRESENTATIONS), ("--guidance", self.guidance, GUIDANCES),
                                     ("--turntable-format", self.turntable_format, ("gif", "mp4")),
                                     ("--weighting", self.weighting, ("sds", "uniform"))):
            if value not in choices:
                raise FieldkitError(f"{name} {value}: choose one of {', '.join(choices)}")
        check_numbers(self, positive=("steps", "guidance_scale", "resolution", "views_per_step", "learning_rate_scale", "final_lr_fraction", "lora_rank",
                                      "max_splats", "preview_every", "turntable_frames", "turntable_resolution"))
        if self.guidance == "bsd-auto" and self.guidance_scale:
            raise FieldkitError("--guidance-scale does not apply to --guidance bsd-auto (its balance sets itself); "
                                "use --guidance bsd for a fixed ratio")
        self.timestep_schedule()  # validates the schedule's settings

    @property
    def total_steps(self) -> int:
        return self.steps or DEFAULT_STEPS[self.rep]

    @property
    def render_resolution(self) -> int:
        return self.resolution or DEFAULT_RESOLUTION[self.rep]

    @property
    def scale(self) -> float | None:
        return self.guidance_scale or DEFAULT_GUIDANCE_SCALE[self.guidance]

    def timestep_schedule(self) -> TimestepSchedule:
        return TimestepSchedule(self.schedule, self.t_min, self.t_max, self.anneal_to)
