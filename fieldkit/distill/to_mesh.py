"""`fieldkit convert --to mesh` and `fieldkit refine`: a textured mesh taught by a teacher's renders.

Conversion extracts the teacher's surface (marching cubes at a level its renders choose), unwraps
it with xatlas and bakes its colour from the teacher's renders; both verbs then refine it by
rendering distillation (NeRF2Mesh's second stage): vertex offsets and the texture are optimised
so that the mesh's renders match the teacher's from synthetic cameras (only vertices some view
shows move), with a Laplacian term on the offsets and normal consistency keeping the surface
smooth, and the texture learnt coarse to fine. It runs in a resumable run directory like every
other conversion; the extracted and baked mesh is kept there (initial.glb) so that a resumed run
does not extract again.
Dimension letters: V vertices, F faces, E edges, C cameras, T texels per side.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.cameras import Cameras
from fieldkit.distill.config import ConvertConfig
from fieldkit.distill.evaluation import psnr_vs_teacher, teacher_test_set
from fieldkit.distill.sampling import choose_rig
from fieldkit.distill.views import held_out_cameras, view_cameras
from fieldkit.errors import FieldkitError
from fieldkit.fitting import evaluate
from fieldkit.io import load
from fieldkit.mesh import Mesh, load_mesh, save_mesh
from fieldkit.mesh.usdz import usd_available
from fieldkit.mesh.config import MeshConfig
from fieldkit.mesh.extract import extract_surface
from fieldkit.mesh.model import SAMPLES_PER_AXIS
from fieldkit.mesh.texture import bake_texture, unwrap
from fieldkit.metrics import mse_to_psnr
from fieldkit.progress import progress_bar
from fieldkit.render.mesh import face_neighbours, seen_faces
from fieldkit.runs import CHECKPOINT_NAME, ResumableRun, RunDirectory, load_optimizer_tensors, optimizer_tensors

INITIAL_NAME = "initial.glb"
OBJ_NAME = "mesh.obj"
USDZ_NAME = "mesh.usdz"  # for USD and AR viewers, where usd-core is installed
COARSE_TO_FINE_SPAN = 0.6
"""Texture level k of L starts learning at k / L of this fraction of the run: coarse colour first,
detail once the geometry has settled."""


class RefinedParameters(nn.Module):
    """What refinement learns: vertex offsets [V, 3] and texture residuals at `levels` resolutions
    (coarsest first, each twice the last, the finest the texture's own), added to the baked texture."""

    def __init__(self, vertex_count: int, texture_shape: tuple[int, int], levels: int):
        super().__init__()
        self.offsets = nn.Parameter(torch.zeros(vertex_count, 3))
        shapes = [tuple(max(1, side >> (levels - 1 - level)) for side in texture_shape) for level in range(levels)]
        self.levels = nn.ParameterList([nn.Parameter(torch.zeros(*shape, 3)) for shape in shapes])

    def texture(self, base: Tensor, active: int) -> Tensor:
        """The baked texture [T_h, T_w, 3] plus the residuals; levels from `active` on get no gradient yet."""
        shape = tuple(base.shape[:2])
        total = base
        for index, level in enumerate(self.levels):
            residual = level if index < active else level.detach()
            if tuple(residual.shape[:2]) != shape:
                residual = F.interpolate(residual.permute(2, 0, 1)[None], size=shape, mode="bilinear",
                                         align_corners=False)[0].permute(1, 2, 0)
            total = total + residual
        return total.clamp(0, 1)


def unique_edges(faces: Tensor) -> Tensor:
    """Undirected edges [E, 2] of a triangle mesh."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=-1).values
    return torch.unique(edges, dim=0)


def laplacian(values: Tensor, edges: Tensor) -> Tensor:
    """Uniform Laplacian [V, K]: each vertex's value minus the mean of its neighbours'."""
    sums = torch.zeros_like(values).index_add(0, edges[:, 0], values[edges[:, 1]]).index_add(
        0, edges[:, 1], values[edges[:, 0]])
    counts = torch.zeros(values.shape[0]).index_add(0, edges.reshape(-1), torch.ones(edges.numel()))
    return values - sums / counts.clamp(min=1)[:, None]


def normal_consistency(vertices: Tensor, faces: Tensor, pairs: Tensor) -> Tensor:
    """Mean 1 - cos between the normals of the face pairs [P, 2] that share an edge."""
    corners = vertices[faces]
    normals = F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1)
    return (1 - (normals[pairs[:, 0]] * normals[pairs[:, 1]]).sum(dim=-1)).mean()


@torch.no_grad()
def teacher_renders(teacher, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """The teacher's rgb [C, H, W, 3] (on its background) and alpha [C, H, W] from `cameras`."""
    images, alphas = [], []
    with progress_bar(f"render {len(cameras)} teacher views", len(cameras)) as advance:
        for index in range(len(cameras)):
            output = teacher.render(cameras[index])
            images.append(output.rgb[0].clamp(0, 1))
            alphas.append(output.alpha[0].clamp(0, 1))
            advance()
    return torch.stack(images), torch.stack(alphas)


class MeshDistiller(ResumableRun):
    """Extracts (or loads) a mesh, then refines it against a teacher's renders."""

    asset_name = "mesh.glb"
    nan_advice = "try a lower --vertex-lr or --texture-lr"

    def __init__(self, teacher_path: str | Path, out: str | Path, config: ConvertConfig, mesh_config: MeshConfig,
                 mesh_path: str | Path | None = None, log: Callable[[str], None] = lambda line: None):
        self.config, self.mesh_config, self.log = config, mesh_config, log
        self.notes: list[str] = []
        self.teacher = load(teacher_path).requires_grad_(False).eval()
        if mesh_path is None and isinstance(self.teacher, Mesh):
            raise FieldkitError(f"{teacher_path} is already a mesh: refine it with fieldkit refine MESH --teacher "
                                f"ASSET, or convert it into a field with --to hashgrid")
        initial_mesh = load_mesh(mesh_path) if mesh_path is not None else None  # a bad file fails before any write
        self.run = RunDirectory(out)
        request = {"teacher": str(Path(teacher_path).resolve()),
                   "mesh": None if mesh_path is None else str(Path(mesh_path).resolve()),
                   "mesh_config": asdict(mesh_config), "convert_config": asdict(config)}
        self.resuming = self.run.claim(request)
        self.rig = choose_rig(config.rig, self.teacher.aabb, self.teacher.dataset)
        started = time.perf_counter()
        cameras = view_cameras(self.rig, self.teacher.dataset, mesh_config.teacher_views,
                               torch.Generator().manual_seed(config.seed))
        self.view_cameras = cameras
        self.view_images, self.view_alphas = teacher_renders(self.teacher, cameras)
        self.timings = {"teacher_render_seconds": time.perf_counter() - started}
        self.extraction: dict = {}
        self.initial = initial_mesh if initial_mesh is not None else self._extracted_mesh()
        self.initial.background = self.teacher.background.clone().float()
        self.initial.dataset = dict(self.teacher.dataset)
        self.model = RefinedParameters(self.initial.vertices.shape[0], tuple(self.initial.texture.shape[:2]),
                                       mesh_config.texture_levels)
        self.optimizer = torch.optim.Adam([{"params": [self.model.offsets], "lr": mesh_config.vertex_lr},
                                           {"params": list(self.model.levels), "lr": mesh_config.texture_lr}])
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.edges = unique_edges(self.initial.faces)
        started = time.perf_counter()
        self.movable = self._seen_vertices()
        self.timings["visibility_seconds"] = time.perf_counter() - started
        neighbours = face_neighbours(self.initial.faces)
        first = torch.arange(neighbours.shape[0])[:, None].expand_as(neighbours)
        adjacent = neighbours > first  # each shared edge once
        self.face_pairs = torch.stack([first[adjacent], neighbours[adjacent]], dim=-1)
        corners = self.initial.vertices[self.edges]
        self.edge_length = float((corners[:, 0] - corners[:, 1]).norm(dim=-1).mean())
        self.steps = mesh_config.refine_steps
        self.step, self.seconds = 0, 0.0

    def _seen_vertices(self) -> Tensor:
        """[V] bool: the corners of faces some teacher view shows (at the renders' own samples).
        Only these move: the rest get gradients from the regularisers alone, which Adam turns into
        full-rate steps that carry unseen surface (under the table, inside objects) away unchecked."""
        seen = seen_faces(self.initial.vertices, self.initial.faces, self.view_cameras.supersampled(SAMPLES_PER_AXIS))
        movable = torch.zeros(self.initial.vertices.shape[0], dtype=torch.bool)
        movable[self.initial.faces[seen].reshape(-1)] = True
        return movable

    def offsets(self) -> Tensor:
        """The learnt vertex offsets [V, 3], zero at vertices no teacher view shows."""
        return self.model.offsets * self.movable[:, None]

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log(line)

    def _extracted_mesh(self) -> Mesh:
        """The teacher's surface, unwrapped and baked; kept in the run directory for a resumed run."""
        path = self.run.file(INITIAL_NAME)
        if path.exists():
            mesh = load_mesh(path)
            self.extraction = dict(mesh.metrics.get("extraction", {}))
            self.timings |= mesh.metrics.get("timings", {})
            return mesh
        config = self.mesh_config
        started = time.perf_counter()
        surface = extract_surface(self.teacher, config.grid_resolution, config.faces, config.threshold)
        self.timings["extraction_seconds"] = time.perf_counter() - started
        chosen = "chosen from the teacher's renders" if config.threshold is None else "as asked"
        self.note(f"surface at log-density {surface.threshold:.3g} ({chosen}): {surface.notes['faces']} faces, "
                  f"{surface.notes['floaters_dropped']} floating pieces dropped")
        started = time.perf_counter()
        uvs, uv_faces = unwrap(surface.vertices, surface.faces, config.texture_size)
        self.timings["unwrap_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        texture, baked = bake_texture(surface.vertices, surface.faces, uvs, uv_faces, list(self.view_images),
                                      self.view_cameras, config.texture_size)
        self.timings["bake_seconds"] = time.perf_counter() - started
        self.extraction = surface.notes | baked
        mesh = Mesh(surface.vertices, surface.faces, uvs, uv_faces, texture, self.teacher.background,
                    self.teacher.aabb.detach().cpu())
        mesh.metrics = {"extraction": self.extraction, "timings": dict(self.timings)}
        save_mesh(mesh, path)
        return mesh

    def refined_mesh(self) -> Mesh:
        with torch.no_grad():
            vertices = self.initial.vertices + self.offsets()
            texture = self.model.texture(self.initial.texture, len(self.model.levels))
        mesh = Mesh(vertices, self.initial.faces, self.initial.uvs, self.initial.uv_faces, texture,
                    self.initial.background, self.initial.bounds)
        mesh.dataset = dict(self.initial.dataset)
        return mesh.eval()

    def active_levels(self) -> int:
        levels = len(self.model.levels)
        return sum(1 for level in range(levels) if self.progress() >= level / levels * COARSE_TO_FINE_SPAN)

    def refine_step(self) -> dict:
        config = self.mesh_config
        chosen = torch.randperm(len(self.view_cameras), generator=self.generator)[:config.views_per_step]
        offsets = self.offsets()
        vertices = self.initial.vertices + offsets
        texture = self.model.texture(self.initial.texture, self.active_levels())
        output = self.initial.render_with(vertices, texture, self.view_cameras[chosen])
        colour = (output.rgb - self.view_images[chosen]).square().mean()
        silhouette = (output.alpha - self.view_alphas[chosen]).square().mean()
        smoothness = laplacian(offsets, self.edges).square().sum(dim=-1).mean() / self.edge_length**2
        consistency = normal_consistency(vertices, self.initial.faces, self.face_pairs)
        loss = colour + config.alpha_weight * silhouette + config.laplacian_weight * smoothness + \
            config.normal_weight * consistency
        self.apply_gradients(loss, "mesh refinement loss")
        return {"loss": loss.item(), "psnr": mse_to_psnr(colour.item())}

    def save_checkpoint(self) -> None:
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        tensors |= optimizer_tensors(self.optimizer) | {"rng": self.generator.get_state()}
        write_tensors(self.run.file(CHECKPOINT_NAME), tensors, {"kind": "checkpoint", "step": self.step,
                                                                 "seconds": self.seconds})

    def load_checkpoint(self) -> None:
        path = self.run.file(CHECKPOINT_NAME)
        if not path.exists():
            return
        tensors, header = read_tensors(path)
        try:
            self.model.load_state_dict({name[len("model."):]: value for name, value in tensors.items()
                                        if name.startswith("model.")})
        except RuntimeError:
            raise FieldkitError(f"{path} does not belong to this run; remove it to start the refinement over") from None
        load_optimizer_tensors(self.optimizer, tensors)
        self.generator.set_state(tensors["rng"])
        self.step, self.seconds = header["step"], header["seconds"]

    def run_conversion(self) -> dict:
        finished = self.finished_metrics()
        if finished is not None:
            return finished
        if self.steps > 0:
            self.optimise("refine mesh", self.refine_step)
        return self.finish()

    def _scores(self, mesh: Mesh, cameras: Cameras, test_set) -> dict:
        scores = {"psnr_vs_teacher": psnr_vs_teacher(self.teacher, mesh, cameras)}
        if test_set is not None:
            scores["psnr_test"] = evaluate(mesh, test_set)["psnr"]
        return scores

    def finish(self) -> dict:
        self.refined = self.refined_mesh()
        cameras = held_out_cameras(self.rig, self.teacher.dataset, self.config.eval_views, self.config.seed)
        test_set, why_not = teacher_test_set(self.teacher)
        if test_set is None:
            self.note(why_not)
        before = self._scores(self.initial, cameras, test_set)
        after = self._scores(self.refined, cameras, test_set)
        moved = self.offsets().detach().norm(dim=-1)
        metrics = after | {f"{name}_before": value for name, value in before.items()} | {
            "steps": self.step, "planned_steps": self.steps, "architecture": "mesh",
            "teacher_architecture": self.teacher.architecture,
            "teacher_psnr_test": self.teacher.metrics.get("psnr_test"),
            "faces": int(self.initial.faces.shape[0]), "vertices": int(self.initial.vertices.shape[0]),
            "texture_size": list(self.initial.texture.shape[:2]), "extraction": self.extraction,
            "mean_vertex_offset": float(moved.mean()),
            "movable_vertex_fraction": float(self.movable.float().mean()), "refine_seconds": self.seconds,
            "seconds": self.seconds + sum(self.timings.values()), **self.timings, "rig": self.rig.name,
            "notes": self.notes,
            "settings": {"mesh_config": asdict(self.mesh_config), "convert_config": asdict(self.config)}}
        return self.write_results(metrics)

    def save_asset(self) -> None:
        """mesh.glb (what a finished run is recognised by: written last), mesh.obj + .mtl + PNG, and
        mesh.usdz where usd-core is installed."""
        self.refined.metrics = {name: value for name, value in self.model.metrics.items() if name != "notes"}
        save_mesh(self.refined, self.run.file(OBJ_NAME))
        if usd_available():  # the optional extra fieldkit[usd]
            save_mesh(self.refined, self.run.file(USDZ_NAME))
        save_mesh(self.refined, self.run.file(self.asset_name))
