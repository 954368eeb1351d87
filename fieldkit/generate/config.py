"""Settings of `fieldkit generate`; each field's docstring is its command-line help."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fieldkit.cameras import FIELD_OF_VIEW
from fieldkit.errors import FieldkitError
from fieldkit.options import check_numbers
from fieldkit.guidance.schedules import TimestepSchedule
from fieldkit.scenes.objects import CAMERA_DISTANCE, ELEVATION_DEGREES

REPRESENTATIONS = ("gaussians", "field")
GUIDANCES = ("sds", "bsd", "bsd-auto", "vsd")


@dataclass(frozen=True)
class PriorProfile:
    """What a kind of prior generates with by default: the settings its users run it with."""

    name: str
    steps: dict
    """representation -> optimisation steps"""
    resolution: dict
    """representation -> render size in pixels (resized to the prior's own resolution)"""
    guidance_scale: dict
    """guidance -> classifier-free guidance scale (bsd-auto has none: its balance sets itself)"""
    camera_distance: tuple[float, float]
    elevation: tuple[float, float]
    """degrees above the horizon"""
    fov: tuple[float, float]
    """horizontal field of view in degrees"""
    background_prune: float = 0.0
    """splats: RGB distance from white under which a splat is pruned as background paint (0: never)"""


BUILTIN_PROFILE = PriorProfile(
    "builtin", {"gaussians": 300, "field": 400}, {"gaussians": 64, "field": 32},
    {"sds": 20.0, "bsd": 20.0, "bsd-auto": None, "vsd": 7.5},
    # the built-in prior's training views (scenes.objects): one distance, one field of view
    (CAMERA_DISTANCE, CAMERA_DISTANCE), ELEVATION_DEGREES, (math.degrees(FIELD_OF_VIEW),) * 2,
    # it has only seen white backgrounds, so on a random one it asks for white around the object, and
    # splats give it that as opaque white fuzz; no colour of its palette is this pale
    background_prune=0.7)
STABLE_DIFFUSION_PROFILE = PriorProfile(
    # DreamGaussian renders splats at up to 512 px and threestudio fields at 64-512 px for SD;
    # DreamFusion's SDS needs CFG 100, ProlificDreamer's VSD 7.5 (its LoRA replaces the strong guidance)
    "stable-diffusion", {"gaussians": 500, "field": 1000}, {"gaussians": 512, "field": 256},
    {"sds": 100.0, "bsd": 100.0, "bsd-auto": None, "vsd": 7.5},
    # threestudio's random cameras, scaled to fieldkit's object size (objects within ~0.55 of the origin)
    (2.0, 2.8), (-10.0, 60.0), (40.0, 60.0))


def profile_of(prior) -> PriorProfile:
    """A latent (VAE) prior is a Stable Diffusion; a pixel-space one is the built-in kind."""
    return BUILTIN_PROFILE if prior.vae is None else STABLE_DIFFUSION_PROFILE


def parse_range(name: str, text: str | None) -> tuple[float, float] | None:
    """'LOW,HIGH' or one number -> (low, high); None stays None."""
    if text is None:
        return None
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(value) for value in values) or values[0] > values[-1]:
        raise FieldkitError(f"--{name.replace('_', '-')} {text}: give a number or LOW,HIGH (LOW <= HIGH)")
    return values[0], values[-1]


@dataclass
class GenerateConfig:
    rep: str = "gaussians"
    """representation: gaussians (splats, DreamGaussian-style densification) or field (hash grid)"""
    guidance: str = "sds"
    """score-distillation loss: sds, bsd (balanced, PlacidDreamer's standard variant), bsd-auto (its
    auto-weighted variant, no guidance scale) or vsd (LoRA variational)"""
    steps: int | None = None
    """optimisation steps (default: the prior's profile; built-in: 300 for gaussians, 400 for a field; Stable
    Diffusion: 500 and 1000)"""
    seed: int = 0
    """random seed; a seed gives the same asset on CPU"""
    guidance_scale: float | None = None
    """classifier-free guidance, diffusers' convention eps_u + s (eps_c - eps_u); bsd's classifier : smoothing
    ratio (default: the prior's profile; built-in: 20 for sds and bsd, 7.5 for vsd; Stable Diffusion: 100 for
    sds and bsd, 7.5 for vsd; bsd-auto takes none)"""
    views_per_step: int = 1
    """views rendered and guided per step"""
    resolution: int | None = None
    """render size in pixels, resized to the prior's resolution (default: the prior's profile; built-in: 64 for
    gaussians, 32 for a field; Stable Diffusion: 512 and 256)"""
    camera_distance: str | None = None
    """distance of the random views from the origin, a number or LOW,HIGH (default: the prior's profile;
    built-in: 2.3; Stable Diffusion: 2.0,2.8)"""
    elevation: str | None = None
    """elevation range of the random views in degrees, LOW,HIGH (built-in: 0,40; Stable Diffusion: -10,60;
    a negative LOW is written --elevation=-10,60)"""
    fov: str | None = None
    """horizontal field of view of the random views in degrees, a number or LOW,HIGH (built-in: 39.6;
    Stable Diffusion: 40,60)"""
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
    background_prune: float | None = None
    """gaussians with cleaning: prune splats within this RGB distance of white, paint of the white background
    that the prior asks for rather than object (default: the prior's profile; built-in: 0.7, its palette has no
    pale colour; Stable Diffusion: 0, off, since its objects may be white)"""
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
        for name in ("camera_distance", "elevation", "fov"):
            parse_range(name, getattr(self, name))
        if self.fov is not None and not 0 < parse_range("fov", self.fov)[0] <= parse_range("fov", self.fov)[1] < 180:
            raise FieldkitError(f"--fov {self.fov}: degrees between 0 and 180")
        if self.camera_distance is not None and parse_range("camera_distance", self.camera_distance)[0] <= 0:
            raise FieldkitError(f"--camera-distance {self.camera_distance}: must be above 0")

    def resolved(self, profile: PriorProfile) -> "GenerateConfig":
        """This config with every setting left to the default taken from `profile`."""
        return dataclasses.replace(
            self, steps=self.steps or profile.steps[self.rep], resolution=self.resolution or profile.resolution[self.rep],
            guidance_scale=self.guidance_scale or profile.guidance_scale[self.guidance],
            camera_distance=self.camera_distance or _range_text(profile.camera_distance),
            elevation=self.elevation or _range_text(profile.elevation), fov=self.fov or _range_text(profile.fov),
            background_prune=profile.background_prune if self.background_prune is None else self.background_prune)

    @property
    def total_steps(self) -> int:
        return self.steps or BUILTIN_PROFILE.steps[self.rep]

    @property
    def render_resolution(self) -> int:
        return self.resolution or BUILTIN_PROFILE.resolution[self.rep]

    @property
    def scale(self) -> float | None:
        return self.guidance_scale or BUILTIN_PROFILE.guidance_scale[self.guidance]

    def camera_ranges(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """(distance, elevation in degrees, horizontal fov in degrees) ranges of the random views."""
        profile = self.resolved(BUILTIN_PROFILE)
        return tuple(parse_range(name, getattr(profile, name)) for name in ("camera_distance", "elevation", "fov"))

    def timestep_schedule(self) -> TimestepSchedule:
        return TimestepSchedule(self.schedule, self.t_min, self.t_max, self.anneal_to)


def _range_text(bounds: tuple[float, float]) -> str:
    """(low, high) as the option spells it: one number when they agree."""
    return repr(bounds[0]) if bounds[0] == bounds[1] else f"{bounds[0]!r},{bounds[1]!r}"
