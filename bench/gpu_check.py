"""The GPU check: every verb on CUDA, timed and set beside the CPU figures of bench/results.

Stages, in order (each with its own time limit, so that one slow stage cannot cost the others'
figures): the native CUDA launchers built; `train --arch hashgrid` and `--arch gaussians` on the
default scene; `convert` hash grid -> MLP at the CPU run's step count; `generate "a red cube"` on
splats and on a field; one SDS step through a Stable-Diffusion-2.1-size prior with random weights
built from its configs; then the whole test suite with FIELDKIT_TEST_DEVICE=cuda (GPU-marked tests
included). Quality is compared with the CPU figures (test PSNR within 0.2 dB, the same prompt
fidelity); time as the CPU seconds over the GPU seconds.

    bench/gpu_check.sh                 # on the GPU machine (about 8 minutes on one H100)
    bench/gpu_check.sh --dry-run       # the same stages on the CPU at tiny sizes (about 10 minutes on 2 cores)
    python bench/gpu_check.py --fetch-wheels .whl   # here: the packages the GPU machine lacks

Writes bench/results/gpu_check.json and gpu_check.log (dry run: gpu_check_dry_run.*), and copies
them to $OUT when it is set (the device machine's folder of files that come back).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCENE = "tabletop"
PROMPT = "a red cube"
QUALITY_TOLERANCE_DB = 0.2

# what the GPU machine's image lacks of fieldkit's dependencies (docs/gpu.md), at the versions tested
# here; imageio-ffmpeg (turntable MP4s) and ray (`batch` runs one job at a time without it) stay behind
WHEELS = {"diffusers": "0.42.1", "importlib-metadata": "10.2.0", "lazy-importer": "0.1.0", "viser": "1.1.1",
          "msgspec": "0.23.0", "trimesh": "5.2.0", "websockets": "16.1.1", "zstandard": "0.25.0", "xatlas": "0.0.11",
          "PyMCubes": "0.1.6", "fast-simplification": "0.2.0", "gsplat": "1.5.3", "rtree": "1.4.1"}
WHEEL_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64"]

# tiny sizes of the dry run: the same stages and code paths, minutes on two CPU cores
DRY = {"train_hashgrid": ["--steps", "30", "--downscale", "4", "--eval-every", "1000"],
       "train_gaussians": ["--steps", "20", "--downscale", "4", "--eval-every", "1000", "--set", "initial_splats=500"],
       "convert": ["--steps", "10", "--batch-rays", "256", "--eval-views", "2", "--eval-resolution", "16"],
       "generate": ["--steps", "4", "--resolution", "16", "--turntable-frames", "2", "--turntable-resolution", "16",
                    "--no-geometry-metrics"],
       "tests": ["tests/test_devices.py", "-k", "guard"]}
LIMITS = {"native": 240, "train_hashgrid": 120, "train_gaussians": 150, "convert": 90, "generate_gaussians": 90,
          "generate_field": 90, "sds_sd21": 120}
"""Seconds each stage may take on the GPU; the test suite gets what is left of --budget."""


class Check:
    def __init__(self, dry_run: bool, budget: float, work: Path):
        self.dry_run, self.budget, self.work = dry_run, budget, work
        self.device = "cpu" if dry_run else "cuda"
        self.name = "gpu_check_dry_run" if dry_run else "gpu_check"
        self.log_path = RESULTS / f"{self.name}.log"
        self.log_file = self.log_path.open("w")
        self.started = time.monotonic()
        self.stages: dict[str, dict] = {}
        # a dry run's tiny sizes are not the CPU runs' settings: it reads their figures, compares none
        self.cpu_reference = cpu_figures()
        self.cpu = {} if dry_run else self.cpu_reference

    def log(self, line: str) -> None:
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def limit(self, stage: str) -> float:
        return LIMITS[stage] * (4 if self.dry_run else 1)  # two loaded cores are slower than one H100

    def command(self, stage: str, argv: list[str], limit: float, env: dict | None = None) -> tuple[str, float]:
        """Runs `argv`, its output into the log -> (status, seconds): ok, failed (exit N) or timed out."""
        self.log(f"\n== {stage}: {' '.join(argv)}")
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=limit, env=os.environ | (env or {}))
            output, status = done.stdout, "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired as error:
            output, status = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else (error.stdout or ""), \
                f"timed out after {limit:.0f} s"
        # progress bars redraw a line many times: keep the last state of each
        self.log("\n".join(line.split("\r")[-1] for line in output.splitlines()))
        seconds = time.perf_counter() - started
        self.log(f"-- {stage}: {status} in {seconds:.1f} s")
        return status, seconds

    def fieldkit(self, stage: str, verb_argv: list[str]) -> dict:
        """One `fieldkit` command -> the stage's record, with its run's metrics.json."""
        out = self.work / stage
        status, seconds = self.command(stage, [sys.executable, "-m", "fieldkit.cli", *verb_argv, "--out", str(out),
                                               "--device", self.device], self.limit(stage))
        metrics_file = out / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        return {"status": status, "wall_seconds": seconds, "metrics": metrics}

    # -- stages ----------------------------------------------------------------------------
    def environment(self) -> dict:
        import torch

        found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                 "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
        nvcc = shutil.which("nvcc")
        if nvcc:
            found["nvcc"] = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return found

    def native(self) -> dict:
        probe = ("import torch; from fieldkit import native; "
                 f"ok = native.available(torch.device('{self.device}')); print('native', ok); raise SystemExit(0 if ok else 1)")
        status, seconds = self.command("native", [sys.executable, "-c", probe], self.limit("native"))
        return {"status": status, "wall_seconds": seconds}

    def train(self, architecture: str) -> dict:
        stage = f"train_{architecture}"
        record = self.fieldkit(stage, ["train", SCENE, "--arch", architecture, *(DRY[stage] if self.dry_run else [])])
        return record | compare(record, self.cpu.get(stage), "psnr_test")

    def convert(self) -> dict:
        teacher = self.work / "train_hashgrid" / "field.safetensors"
        reference = self.cpu.get("convert") or {}
        steps = DRY["convert"] if self.dry_run else ["--steps", str(reference.get("steps", 4600))]
        record = self.fieldkit("convert", ["convert", str(teacher), "--to", "mlp", *steps])
        return record | compare(record, reference, "psnr_vs_teacher")

    def generate(self, rep: str) -> dict:
        stage = f"generate_{rep}"
        record = self.fieldkit(stage, ["generate", PROMPT, "--rep", rep, *(DRY["generate"] if self.dry_run else [])])
        return record | compare(record, self.cpu.get(stage), "fidelity", tolerance=0.0)

    def sds_sd21(self) -> dict:
        """One SDS step through a Stable-Diffusion-2.1-base-size prior (random weights; the dry run
        divides every width by 16): at the CPU figure's 64 px renders, and at the profile's 512 px."""
        code = ("import json, sys; sys.path.insert(0, 'bench'); from generate import sd_step_seconds; "
                f"print('SDS', json.dumps([sd_step_seconds('{self.device}', 'sds', 2, resolution, "
                f"{16 if self.dry_run else 1}) for resolution in (64, None)]))")
        status, seconds = self.command("sds_sd21", [sys.executable, "-c", code], self.limit("sds_sd21"))
        lines = [line for line in self.log_path.read_text().splitlines() if line.startswith("SDS [")]
        rows = json.loads(lines[-1][4:]) if lines and status == "ok" else []
        reference = self.cpu.get("sds_sd21") or {}
        same_size = rows[0] if rows else {}
        return {"status": status, "wall_seconds": seconds, "metrics": same_size, "profile_size": rows[1:],
                "cpu": reference, "speedup": _ratio(reference.get("seconds_per_step"), same_size.get("seconds_per_step"))}

    def tests(self) -> dict:
        left = self.budget - (time.monotonic() - self.started) - 20
        workers = [] if self.dry_run else ["-n", str(min(12, os.cpu_count() or 1))]
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers,
                *(DRY["tests"] if self.dry_run else [])]
        status, seconds = self.command("tests", argv, max(left, 30), env={"FIELDKIT_TEST_DEVICE": self.device})
        summary = [line for line in self.log_path.read_text().splitlines() if " passed" in line or " failed" in line]
        return {"status": status, "wall_seconds": seconds, "summary": summary[-1] if summary else None}

    def run(self) -> dict:
        self.log(f"fieldkit GPU check ({'dry run on the CPU' if self.dry_run else 'CUDA'}), {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.stages["environment"] = self.environment()
        self.log(json.dumps(self.stages["environment"]))
        steps = [("native", self.native), ("train_hashgrid", lambda: self.train("hashgrid")),
                 ("train_gaussians", lambda: self.train("gaussians")), ("convert", self.convert),
                 ("generate_gaussians", lambda: self.generate("gaussians")),
                 ("generate_field", lambda: self.generate("field")), ("sds_sd21", self.sds_sd21), ("tests", self.tests)]
        for stage, step in steps:
            self.stages[stage] = step()
        report = {"measured": measured(), "dry_run": self.dry_run, "device": self.device,
                  "seconds": time.monotonic() - self.started, "stages": self.stages,
                  "cpu_reference": self.cpu_reference,
                  "cpu_reference_source": "bench/results/{train,splats,convert,generate}.json (their own dates)"}
        self.log("\n" + table(self.stages))
        (RESULTS / f"{self.name}.json").write_text(json.dumps(report, indent=2, default=str))
        self.log_file.close()
        if os.environ.get("OUT"):
            for suffix in (".json", ".log"):
                shutil.copy(RESULTS / f"{self.name}{suffix}", Path(os.environ["OUT"]) / f"{self.name}{suffix}")
        return report


# -- the CPU figures it compares with ---------------------------------------------------------

def cpu_figures() -> dict:
    """Each stage's CPU run from bench/results (the newest of its kind)."""
    def read(name: str) -> dict:
        path = RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    train, splats, convert, generate = read("train"), read("splats"), read("convert"), read("generate")
    figures = {}
    hashgrid = [run for run in train.get("runs", []) if run.get("architecture") == "hashgrid"]
    if hashgrid:
        figures["train_hashgrid"] = _pick(hashgrid[-1], "seconds", "steps", "psnr_test", "measured")
    if "train" in splats:
        figures["train_gaussians"] = _pick(splats["train"], "seconds", "steps", "psnr_test", "measured")
    mlp = [row for row in convert.get("matrix", []) if row.get("teacher") == "hashgrid" and row.get("student") == "mlp"]
    if mlp:
        figures["convert"] = _pick(mlp[-1], "seconds", "steps", "psnr_vs_teacher", "psnr_test")
    for rep in ("gaussians", "field"):
        runs = [run for run in generate.get("runs", []) if run.get("prompt") == "red cube" and run.get("rep") == rep
                and run.get("guidance") == "sds"]
        if runs:
            figures[f"generate_{rep}"] = _pick(runs[-1], "seconds", "steps", "fidelity")
    if generate.get("sd21_base_step"):
        figures["sds_sd21"] = _pick(generate["sd21_base_step"][-1], "seconds_per_step", "resolution", "measured")
    return figures


def _pick(row: dict, *names: str) -> dict:
    return {name: row[name] for name in names if name in row}


def _ratio(cpu: float | None, gpu: float | None) -> float | None:
    return cpu / gpu if cpu and gpu else None


def compare(record: dict, reference: dict | None, quality: str, tolerance: float = QUALITY_TOLERANCE_DB) -> dict:
    """The stage's quality and speed beside its CPU run: same quality within `tolerance`, speedup."""
    metrics, reference = record["metrics"], reference or {}
    mine, theirs = metrics.get(quality), reference.get(quality)
    same = None if mine is None or theirs is None else mine >= theirs - tolerance
    return {"cpu": reference, "quality": quality, "quality_delta": None if same is None else mine - theirs,
            "same_quality": same, "speedup": _ratio(reference.get("seconds"), metrics.get("seconds"))}


def table(stages: dict) -> str:
    rows = [f"{'stage':<20} {'status':<24} {'seconds':>8} {'cpu s':>8} {'speedup':>8}  quality (this vs cpu)"]
    for stage, record in stages.items():
        if stage == "environment":
            continue
        metrics, cpu = record.get("metrics", {}), record.get("cpu", {})
        seconds = metrics.get("seconds", metrics.get("seconds_per_step", record.get("wall_seconds")))
        cpu_seconds = cpu.get("seconds", cpu.get("seconds_per_step"))
        quality = record.get("quality")
        shown = f"{quality} {_number(metrics.get(quality))} vs {_number(cpu.get(quality))}" if quality else \
            (record.get("summary") or "")
        rows.append(f"{stage:<20} {record['status']:<24} {_number(seconds):>8} {_number(cpu_seconds):>8} "
                    f"{_number(record.get('speedup')):>8}  {shown}")
    return "\n".join(rows)


def _number(value) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


# -- wheels for the GPU machine ---------------------------------------------------------------

def fetch_wheels(directory: Path) -> None:
    """Downloads WHEELS for the GPU machine's Python (3.12, x86-64 manylinux), no dependencies
    beyond the list (the machine's image holds the rest)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, version in WHEELS.items():
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                "--implementation", "cp", *[flag for tag in WHEEL_PLATFORMS for flag in ("--platform", tag)],
                "-d", str(directory), f"{name}=={version}"]
        subprocess.run(argv, check=True)
    total = sum(path.stat().st_size for path in directory.glob("*.whl"))
    print(f"{len(list(directory.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {directory}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same stages on the CPU at tiny sizes")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default: 480)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fieldkit-gpu-check"), help="run directories")
    parser.add_argument("--fetch-wheels", type=Path, metavar="DIR", help="download the wheels the GPU machine lacks")
    args = parser.parse_args()
    if args.fetch_wheels:
        fetch_wheels(args.fetch_wheels)
        return 0
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: this machine has no CUDA device; use --dry-run here", file=sys.stderr)
        return 2
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    report = Check(args.dry_run, args.budget * (4 if args.dry_run else 1), args.work).run()
    return 0 if all(stage.get("status", "ok") == "ok" for stage in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
