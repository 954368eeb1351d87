"""Generation into a radiance field: a small hash grid (the default field architecture) in a box
around the origin, started as a soft density blob at the centre so that the first renders show
an object-sized something for the prior to shape (DreamFusion adds a density blob for the same
reason; here it is fitted into the grid, so the saved field is exactly what was optimised).
Dimension letters: R rays, M points.
"""
from __future__ import annotations

import torch

from fieldkit.fields import make_config, make_field
from fieldkit.generate.run import GenerationRun
from fieldkit.generate.shading import Renders
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.runs import ASSET_NAME

HALF_EXTENT = 0.75
"""The box [-0.75, 0.75]^3 holds the prior's objects (within about 0.55 of the origin) with margin."""
HASHGRID = {"levels": 8, "log2_table_size": 15, "base_resolution": 8, "max_resolution": 128, "hidden_width": 32,
            "colour_width": 32, "learning_rate": 1e-2}
SAMPLES_PER_DIAGONAL = 128
OCCUPANCY_RESOLUTION = 32
OCCUPANCY_EVERY = 16
BLOB_RADIUS = 0.35
BLOB_LOG_DENSITY = 3.0
"""log-density at the blob's centre; it falls off as a Gaussian of width BLOB_RADIUS."""
BLOB_FIT_STEPS = 60
BLOB_FIT_POINTS = 4096


def blob_log_density(points: torch.Tensor) -> torch.Tensor:  # [M, 3] -> [M]
    return BLOB_LOG_DENSITY - 2 * BLOB_LOG_DENSITY * (points.norm(dim=-1) / BLOB_RADIUS).square()


def fit_blob(model: RadianceField, generator: torch.Generator) -> None:
    """Fits the field's log-density to the blob at random points (a separate optimiser: the
    run's own starts with fresh moments)."""
    optimizer = torch.optim.Adam(model.field.parameters(), lr=HASHGRID["learning_rate"])
    aabb = model.aabb
    for _ in range(BLOB_FIT_STEPS):
        points = aabb[0] + torch.rand(BLOB_FIT_POINTS, 3, generator=generator, device=aabb.device) * (aabb[1] - aabb[0])
        loss = (model.field.log_density(points) - blob_log_density(points).clamp(min=-10)).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class FieldGeneration(GenerationRun):
    asset_name = ASSET_NAME

    def build(self) -> None:
        aabb = torch.tensor([[-HALF_EXTENT] * 3, [HALF_EXTENT] * 3])
        overrides = HASHGRID | {"learning_rate": HASHGRID["learning_rate"] * self.config.learning_rate_scale}
        field = make_field("hashgrid", aabb, make_config("hashgrid", "cpu", overrides))
        step_size = float((aabb[1] - aabb[0]).norm()) / SAMPLES_PER_DIAGONAL
        self.model = RadianceField(field, OccupancyGrid(aabb, OCCUPANCY_RESOLUTION), step_size).to(self.prior.device)
        fit_blob(self.model, self.generator)
        self.model.update_occupancy(1.0, self.generator)
        self.optimizer = torch.optim.Adam(self.model.field.optimizer_groups(), eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    def render(self, cameras) -> Renders:
        cameras = cameras.to(self.model.aabb.device)
        black = torch.zeros(3, device=cameras.device)  # premultiplied colour: composited later
        outputs = []
        for index in range(len(cameras)):
            origins, directions = cameras.image_rays(index)  # [R, 3]
            jitter = torch.rand(len(origins), generator=self.generator, device=origins.device)
            outputs.append(self.model.render_rays(origins, directions, black, jitter))
        shape = (len(cameras), int(cameras.height[0]), int(cameras.width[0]))
        return Renders(torch.stack([o.rgb for o in outputs]).view(*shape, 3),
                       torch.stack([o.alpha for o in outputs]).view(shape),
                       torch.stack([o.depth for o in outputs]).view(shape))

    def after_step(self) -> None:
        if self.step % OCCUPANCY_EVERY == 0:
            self.model.update_occupancy(1.0 if self.step < 256 else 0.25, self.generator)

    def representation_metrics(self) -> dict:
        return {"occupied_fraction": self.model.grid.occupied_fraction()}
