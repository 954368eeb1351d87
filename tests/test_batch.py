"""`fieldkit batch`: a local Ray gives the same assets as the jobs one by one; a killed batch reruns
only what did not finish; a failing job stops no other; bad jobs files are one line."""
from __future__ import annotations

import contextlib
import io
import json
import shlex

import pytest
import torch

from fieldkit.asset_file import read_tensors
from fieldkit.batch import runner
from fieldkit.cli import main
from fieldkit.fields import make_config, make_field
from fieldkit.io import save_field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
SMALL_HASHGRID = {"levels": 4, "log2_table_size": 10, "max_resolution": 32, "hidden_width": 16, "colour_width": 16}
ASSETS = {"generate": "splats.safetensors", "train": "field.safetensors", "convert": "field.safetensors"}


def run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_dataset):
    """A random-weight 16 px prior and a small hash-grid teacher: what the jobs read."""
    from fieldkit.prior.model import PriorArchitecture, PriorComponents

    folder = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    PriorComponents.build(PriorArchitecture(resolution=16, channels=(16, 32), text_width=32, text_layers=1)) \
        .save_pretrained(folder / "prior")
    field = make_field("hashgrid", AABB, make_config("hashgrid", overrides=SMALL_HASHGRID))
    save_field(RadianceField(field, OccupancyGrid(AABB, 8), 0.05), folder / "teacher.safetensors")
    return {"prior": folder / "prior", "teacher": folder / "teacher.safetensors", "data": tiny_dataset}


def four_jobs(inputs) -> list[dict]:
    """Two generate jobs, one train and one convert, each a few steps of tiny models."""
    generate = (f"--steps 3 --resolution 16 --turntable-frames 2 --turntable-resolution 16 "
                f"--prior {shlex.quote(str(inputs['prior']))}")
    train = ("--arch hashgrid --steps 15 --batch-rays 256 --samples-per-diagonal 32 --occupancy-resolution 16 "
             "--eval-every 1000 --set levels=4 --set log2_table_size=10 --set max_resolution=32")
    convert = ("--to mlp --steps 5 --batch-rays 64 --eval-views 1 --eval-resolution 8 --set width=16 "
               "--set depth=1 --set frequencies=2 --set colour_width=16")
    return [{"name": "red", "command": f'generate "a red cube" {generate}'},
            {"name": "blue", "command": f'generate "a blue sphere" {generate} --seed 1'},
            {"name": "field", "command": f"train {shlex.quote(str(inputs['data']))} {train}"},
            {"name": "student", "command": f"convert {shlex.quote(str(inputs['teacher']))} {convert}"}]


def write_jobs(path, inputs):
    path.write_text("".join(json.dumps(job) + "\n" for job in four_jobs(inputs)))
    return path


@pytest.mark.skipif(not runner.ray_available(), reason="Ray is not installed (pip install 'fieldkit[batch]')")
def test_a_local_ray_gives_the_assets_of_the_jobs_one_by_one(inputs, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", inputs)
    code, stdout, stderr = run(["batch", jobs, "--out", tmp_path / "ray", "--workers", "2"])
    assert code == 0, stderr
    assert "4 of 4 jobs done" in stdout
    summary = json.loads((tmp_path / "ray" / "batch.json").read_text())
    assert summary["backend"] == "ray" and summary["done"] == 4
    code, _, stderr = run(["batch", jobs, "--out", tmp_path / "one-by-one", "--workers", "1"])
    assert code == 0, stderr
    assert json.loads((tmp_path / "one-by-one" / "batch.json").read_text())["backend"] == "in-process"
    for name, verb in (("red", "generate"), ("blue", "generate"), ("field", "train"), ("student", "convert")):
        on_ray, alone = (read_tensors(tmp_path / where / name / ASSETS[verb])[0] for where in ("ray", "one-by-one"))
        assert on_ray.keys() == alone.keys()
        for tensor in on_ray:
            assert torch.equal(on_ray[tensor], alone[tensor]), (name, tensor)
    assert summary["jobs"]["field"]["metrics"]["steps"] == 15


def test_a_killed_batch_reruns_only_what_did_not_finish(inputs, tmp_path, monkeypatch):
    jobs = write_jobs(tmp_path / "jobs.jsonl", inputs)
    started, original = [], runner.run_job

    def run_job(job, *args, **kwargs):
        started.append(job.name)
        if job.name == "field" and started.count("field") == 1:
            raise KeyboardInterrupt  # the batch is killed while its third job runs
        return original(job, *args, **kwargs)

    monkeypatch.setattr(runner, "run_job", run_job)
    code, _, _ = run(["batch", jobs, "--out", tmp_path / "batch", "--workers", "1"])
    assert code == 130 and started == ["red", "blue", "field"]
    assert sorted(json.loads((tmp_path / "batch" / "batch.json").read_text())["jobs"]) == ["blue", "red"]
    code, _, stderr = run(["batch", jobs, "--out", tmp_path / "batch", "--workers", "1"])
    assert code == 0, stderr
    assert started[3:] == ["field", "student"] and "2 of 4 jobs already done" in stderr


def test_a_failing_job_stops_no_other(inputs, tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- name: broken\n  command: convert {inputs['teacher']} --to mlp --steps 2 --set widht=3\n"
                    f"- name: fine\n  command: render {inputs['teacher']} --orbit 2 --resolution 8\n")
    code, stdout, stderr = run(["batch", jobs, "--out", tmp_path / "batch", "--workers", "1"])
    assert code == 1 and "1 of 2 jobs done" in stdout
    assert "job broken failed" in stderr and "widht" in stderr
    summary = json.loads((tmp_path / "batch" / "batch.json").read_text())
    assert summary["jobs"]["broken"]["status"] == "failed" and "widht" in summary["jobs"]["broken"]["error"]
    assert len(list((tmp_path / "batch" / "fine").glob("*.png"))) == 2


@pytest.mark.parametrize("content, message", [
    ('{"command": "view x.ply"}\n', "must start with one of train, convert, generate, render"),
    ('{"command": "render x --orbit 2 --out y"}\n', "leave --out out"),
    ('{"command": "render x --orbit -2"}\n', "--orbit: must be at least 0"),
    ('{"name": "a", "command": "render x --orbit 2"}\n{"name": "a", "command": "render y --orbit 2"}\n',
     "repeated: a"),
    ('{"name": "../up", "command": "render x --orbit 2"}\n', "must be letters, digits"),
    ('{"command": "render x --orbit 2"\n', "is not a JSON value"),
    ('{"cmd": "render x"}\n', "not cmd"),
    ("\n", "holds no job"),
])
def test_a_bad_jobs_file_is_one_line_and_runs_nothing(content, message, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(content)
    code, _, stderr = run(["batch", jobs, "--out", tmp_path / "batch"])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], stderr
    assert not (tmp_path / "batch").exists()


@pytest.mark.skipif(not runner.ray_available(), reason="Ray is not installed (pip install 'fieldkit[batch]')")
def test_generate_prompts_with_workers_gives_the_assets_of_one_at_a_time(inputs, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na blue sphere\n")
    flags = ["--steps", "3", "--resolution", "16", "--turntable-frames", "2", "--turntable-resolution", "16",
             "--prior", inputs["prior"]]
    for workers, where in ((2, "workers"), (1, "alone")):
        code, _, stderr = run(["generate", "--prompts", prompts, "--out", tmp_path / where, "--workers", workers, *flags])
        assert code == 0, stderr
    assert json.loads((tmp_path / "workers" / "batch.json").read_text())["backend"] == "ray"
    for name in ("a_red_cube", "a_blue_sphere"):
        on_ray, alone = (read_tensors(tmp_path / where / name / "splats.safetensors")[0] for where in ("workers", "alone"))
        assert all(torch.equal(on_ray[tensor], alone[tensor]) for tensor in alone)
