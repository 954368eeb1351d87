"""Rays for distillation without photos: synthetic camera poses around the teacher, each ray
through a random pixel of its own camera.

Object scenes are seen from a sphere or hemisphere around the teacher's bounds; forward-facing
or unbounded scenes from a jittered box around the positions of the dataset's own cameras,
looking the way those cameras looked (a sphere would put cameras where no photo ever was).
A pose is an eye and a point it looks at, so a pose that the student got wrong can be revisited
with small perturbations whatever the rig (PVD-AL's image level).
"""
from __future__ import annotations


import torch
from torch import Tensor

from fieldkit.cameras import FIELD_OF_VIEW, Cameras, framing_distance, look_at
from fieldkit.data import load_cameras, resolve_source
from fieldkit.errors import FieldkitError
from fieldkit.ndc import is_forward_facing

RIGS = ("sphere", "hemisphere", "box")
BOX_MARGIN = 0.1  # the box grows by this fraction of its extent on every side


class CameraRig:
    """Poses (eye, target) [R, 3] twice, and rays through random pixels of cameras at them."""

    name: str  # the rig's name, as --rig spells it

    def __init__(self, size: float, resolution: int = 128, fov: float = FIELD_OF_VIEW):
        self.size = size  # the rig's length scale: perturbations are fractions of it
        self.resolution, self.fov = resolution, fov

    def poses(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the rig's poses are drawn (its generators live there)."""
        raise NotImplementedError

    def perturbed(self, eyes: Tensor, targets: Tensor, amount: float,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The poses moved by Gaussian steps of `amount` times the rig's size, eye and target alike."""
        def step():
            return torch.randn(eyes.shape, generator=generator, device=eyes.device) * amount * self.size
        return eyes + step(), targets + step()

    def rays(self, eyes: Tensor, targets: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Origins and unit directions [R, 3]: one random pixel of the camera at each pose."""
        cameras = Cameras.from_fov(look_at(eyes, targets), self.resolution, self.resolution, self.fov)
        pixels = torch.rand(eyes.shape[0], 2, generator=generator, device=eyes.device) * self.resolution  # [R, 2]
        return cameras.generate_rays(torch.arange(eyes.shape[0], device=eyes.device), pixels[:, 0], pixels[:, 1])


class OrbitRig(CameraRig):
    """Cameras at `radius` around the box's centre, looking at it, with a field of view that keeps
    the whole box in sight; `upper_only` keeps them above the centre (z up)."""

    def __init__(self, aabb: Tensor, upper_only: bool, resolution: int = 128, fov: float = FIELD_OF_VIEW):
        self.centre = (aabb[0] + aabb[1]) / 2  # [3]
        # the box's bounding sphere fits the view from this distance
        self.radius = framing_distance(aabb, fov)
        self.upper_only = upper_only
        super().__init__(self.radius, resolution, fov)

    @property
    def name(self) -> str:
        return "hemisphere" if self.upper_only else "sphere"

    @property
    def device(self) -> torch.device:
        return self.centre.device

    def poses(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        unit = torch.randn(count, 3, generator=generator, device=self.centre.device)
        unit = unit / unit.norm(dim=-1, keepdim=True).clamp(min=1e-9)  # [R, 3] uniform on the sphere
        if self.upper_only:
            unit[:, 2] = unit[:, 2].abs()
        return self.centre + self.radius * unit, self.centre.expand(count, 3)


class BoxRig(CameraRig):
    """Eyes uniform in the bounding box of the dataset's camera positions (grown by a margin),
    each looking along the viewing direction of a random dataset camera, slightly jittered."""

    def __init__(self, positions: Tensor, forwards: Tensor, focus: float, resolution: int = 128,
                 fov: float = FIELD_OF_VIEW, direction_jitter: float = 0.05):
        low, high = positions.amin(dim=0), positions.amax(dim=0)
        margin = BOX_MARGIN * (high - low).clamp(min=1e-3 * focus)
        self.low, self.high = low - margin, high + margin  # [3] each
        self.forwards = forwards / forwards.norm(dim=-1, keepdim=True)  # [N, 3]
        self.focus, self.direction_jitter = focus, direction_jitter
        super().__init__(focus, resolution, fov)

    name = "box"

    @property
    def device(self) -> torch.device:
        return self.forwards.device

    def poses(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        device = self.forwards.device
        eyes = self.low + torch.rand(count, 3, generator=generator, device=device) * (self.high - self.low)
        chosen = torch.randint(self.forwards.shape[0], (count,), generator=generator, device=device)
        forwards = self.forwards[chosen] + self.direction_jitter * torch.randn(count, 3, generator=generator,
                                                                               device=device)
        return eyes, eyes + self.focus * forwards / forwards.norm(dim=-1, keepdim=True)


def dataset_cameras(dataset: dict) -> Cameras | None:
    """The teacher's training cameras (its test cameras when the split has no file), if readable."""
    source = dataset.get("source")
    if not source:
        return None
    try:
        path = resolve_source(source)
        train_file = path / "transforms_train.json" if path.is_dir() else path
        cameras, _ = load_cameras(train_file if train_file.exists() else path)
    except (FieldkitError, OSError):
        return None
    return cameras


def choose_rig(requested: str, aabb: Tensor, dataset: dict) -> CameraRig:
    """The rig of `requested` (sphere, hemisphere, box or auto). `auto` asks the teacher's dataset
    where its cameras were: a box for forward-facing captures, a hemisphere when every camera
    is above the centre, else the whole sphere (also the choice without a dataset)."""
    if requested not in (*RIGS, "auto"):
        raise FieldkitError(f"unknown rig '{requested}'; choose {', '.join(RIGS)} or auto")
    cameras = dataset_cameras(dataset) if requested in ("box", "auto") else None
    if requested == "box" and cameras is None:
        raise FieldkitError("the box rig needs the teacher's dataset cameras, and the teacher carries none")
    if cameras is not None:
        forwards = -cameras.c2w[:, :3, 2]  # OpenGL cameras look down their -z axis
        if requested == "box" or is_forward_facing(cameras.c2w):
            focus = float((aabb[1] - aabb[0]).norm()) / 2
            return BoxRig(cameras.positions.to(aabb.device), forwards.to(aabb.device), focus)
    if requested == "auto" and cameras is not None:
        centre_z = float((aabb[0, 2] + aabb[1, 2]) / 2)
        return OrbitRig(aabb, bool((cameras.positions[:, 2] >= centre_z).all()))
    return OrbitRig(aabb, requested == "hemisphere")
