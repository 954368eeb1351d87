"""`fieldkit prior train`: trains the built-in prior from scratch on rendered objects.

The run directory holds run.json, a resumable checkpoint (weights, their moving average,
optimiser and random state, the loss history), loss.png, and at the end the pipeline directory
`prior/` (the averaged weights, saved with save_pretrained) and metrics.json.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fieldkit.devices import make_generator, resolve_device, restore_generator
from fieldkit.errors import FieldkitError
from fieldkit.options import check_numbers
from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.runs import CHECKPOINT_NAME, RUN_NAME, ResumableRun, RunDirectory, load_optimizer_tensors, optimizer_tensors

from .curve import write_curve_png
from .dataset import caption, render_objects
from .model import PriorArchitecture, PriorComponents

PIPELINE_NAME = "prior"


@dataclass
class PriorTrainConfig:
    steps: int = 3000
    """optimisation steps"""
    batch_size: int = 32
    """images per step"""
    learning_rate: float = 4e-4
    """AdamW learning rate at the first step"""
    final_lr_fraction: float = 0.1
    """learning rate at the last step, as a fraction of the first"""
    caption_dropout: float = 0.1
    """fraction of captions replaced by the empty prompt, which classifier-free guidance needs"""
    ema_decay: float = 0.999
    """decay of the weights' moving average, which is what gets saved"""
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting (Hang et al. 2023), which speeds up convergence"""
    views_per_object: int = 64
    """training views of each (shape, colour, size)"""
    stack_views: int = 3000
    """training views of random two-object stacks"""
    resolution: int = 32
    """image size in pixels"""
    checkpoint_seconds: float = 60.0
    """seconds between checkpoints"""
    seed: int = 0
    """random seed (data, initial weights and noise)"""
    device: str = "auto"
    """where the run computes: auto (CUDA when present, else the CPU), cpu, or cuda (also cuda:N)"""

    def __post_init__(self):
        check_numbers(self, positive=("steps", "batch_size", "learning_rate", "final_lr_fraction", "views_per_object",
                                      "resolution"))


class PriorTrainer(ResumableRun):
    asset_name = PIPELINE_NAME
    max_gradient_norm = 1.0
    nan_advice = "try a lower --learning-rate"

    def __init__(self, out: str | Path, config: PriorTrainConfig, render_data: bool = True):
        self.config, self.run = config, RunDirectory(out)
        self.run.claim({"command": "prior train", **asdict(config)})
        torch.manual_seed(config.seed)
        self.components = PriorComponents.build(PriorArchitecture(resolution=config.resolution))
        self.device = resolve_device(config.device)
        self.model = torch.nn.ModuleDict({"unet": self.components.unet, "text_encoder": self.components.text_encoder})
        self.model.to(self.device)
        self.average = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate, weight_decay=1e-2)
        self.base_lrs = [config.learning_rate]
        # the images and captions live on the CPU, so their draws are made there; noise and timesteps
        # are drawn where the model is
        self.generator = make_generator(config.seed, "cpu")
        self.noise_generator = make_generator(config.seed, self.device)
        self.steps, self.step, self.seconds, self.losses = config.steps, 0, 0.0, []
        self.data = render_objects(config.seed, config.views_per_object, config.stack_views,
                                   config.resolution) if render_data else None
        self.tokenizer, self.scheduler = self.components.tokenizer, self.components.scheduler
        alphas = self.scheduler.alphas_cumprod
        self.snr = (alphas / (1 - alphas)).to(self.device)  # [T]

    def train_step(self) -> dict:
        batch = torch.randint(len(self.data), (self.config.batch_size,), generator=self.generator, device="cpu")
        images = self.data.images[batch]
        flip = torch.rand(len(batch), generator=self.generator, device="cpu") < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images).to(self.device) * 2 - 1
        dropped = torch.rand(len(batch), generator=self.generator, device="cpu") < self.config.caption_dropout
        captions = ["" if drop else caption(self.data, int(index), self.generator) for index, drop in zip(batch, dropped)]
        tokens = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                                return_tensors="pt").input_ids.to(self.device)
        noise = torch.randn(images.shape, generator=self.noise_generator, device=self.device)
        timesteps = torch.randint(self.scheduler.config.num_train_timesteps, (len(batch),),
                                  generator=self.noise_generator, device=self.device)
        noisy = self.scheduler.add_noise(images, noise, timesteps)
        text = self.model["text_encoder"](tokens)[0]
        predicted = self.model["unet"](noisy, timesteps, encoder_hidden_states=text).sample
        # epsilon-prediction with Min-SNR-gamma: weight min(SNR, gamma) / SNR per sample
        weight = self.snr[timesteps].clamp(max=self.config.min_snr_gamma) / self.snr[timesteps]
        loss = (weight * F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        self.apply_gradients(loss)
        self.losses.append(loss.item())
        return {"loss": sum(self.losses[-50:]) / len(self.losses[-50:])}

    def after_step(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if value.is_floating_point():
                    self.average[name].lerp_(value, 1 - decay)

    def save_checkpoint(self) -> None:
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        tensors |= {f"average.{name}": value for name, value in self.average.items()}
        tensors |= optimizer_tensors(self.optimizer)
        tensors |= {"rng": self.generator.get_state(), "noise_rng": self.noise_generator.get_state(),
                    "losses": torch.tensor(self.losses)}
        write_tensors(self.run.file(CHECKPOINT_NAME), tensors,
                      {"kind": "checkpoint", "step": self.step, "seconds": self.seconds})
        write_curve_png(self.run.file("loss.png"), self.losses, "training loss")

    def load_checkpoint(self) -> None:
        path = self.run.file(CHECKPOINT_NAME)
        if not path.exists():
            return
        tensors, header = read_tensors(path)
        self.model.load_state_dict({name[6:]: value for name, value in tensors.items() if name.startswith("model.")})
        self.average = {name[8:]: value.to(self.device) for name, value in tensors.items() if name.startswith("average.")}
        load_optimizer_tensors(self.optimizer, tensors)
        self.generator.set_state(tensors["rng"])
        if "noise_rng" in tensors:  # checkpoints before noise had its own generator drew it from "rng"
            restore_generator(self.noise_generator, tensors["noise_rng"], path)
        self.losses = tensors["losses"].tolist()
        self.step, self.seconds = header["step"], header["seconds"]

    def save_asset(self) -> None:
        self.export(self.run.file(PIPELINE_NAME))

    def export(self, target: Path) -> None:
        """The averaged weights as a pipeline directory, swapped in whole so it is never half-written."""
        self.model.load_state_dict(self.average)
        self.model.to("cpu")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".prior-", dir=target.parent))
        self.components.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)

    def finish(self) -> dict:
        finished = self.finished_metrics()
        if finished is not None:
            return finished
        self.optimise("prior", self.train_step)
        write_curve_png(self.run.file("loss.png"), self.losses, "training loss")
        return self.write_results({"steps": self.step, "seconds": round(self.seconds, 1),
                                   "final_loss": sum(self.losses[-100:]) / max(len(self.losses[-100:]), 1),
                                   "images": len(self.data), "device": str(self.device), "config": asdict(self.config)})


def export_checkpoint(run_directory: str | Path, out: str | Path) -> int:
    """Writes the averaged weights of a run's latest checkpoint (finished or not) as a pipeline
    directory -> the checkpoint's step."""
    run = RunDirectory(run_directory)
    try:
        request = json.loads(run.file(RUN_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        raise FieldkitError(f"{run.path} is not a prior training run (no readable {RUN_NAME})") from None
    if request.pop("command", None) != "prior train" or not run.file(CHECKPOINT_NAME).exists():
        raise FieldkitError(f"{run.path} holds no prior training checkpoint")
    trainer = PriorTrainer(run.path, PriorTrainConfig(**request), render_data=False)
    trainer.load_checkpoint()
    trainer.export(Path(out))
    return trainer.step
