"""How many steps a field conversion takes when the user names none: as many as fit in about
four minutes on a 2-core CPU, so that a cheap pair is not stopped short for an expensive one's
sake (tensorf-vm -> mlp: -1.86 dB at 900 steps, -0.81 at 2400; voxels -> tensorf-vm: -1.70 at
900, -0.77 at 1800)."""
from __future__ import annotations

# Seconds per distillation step of each teacher -> student pair at default settings on the
# 2-core reference CPU: a whole default run's seconds over its steps (two threads, nothing else
# running, the default scene's teachers; see bench/results/convert.json), so a voxel student's
# projection is included; the slowest such run of stops 19-21 where there were several, since the
# same run varies by about 20% between sessions. Stop 22's CPU ran 30-50% slower than that, and
# unevenly (tensorf-vm -> mlp: 265 s and 348 s for the same 8800 steps in one benchmark run); its
# MLP-student runs are not folded in, as they would set the steps by one slow machine.
# A table, not a model: a teacher's cost and a student's did not
# add up (fits of either form missed single pairs by up to 30-34%, because how many samples a
# student evaluates depends on the teacher's occupancy). Timings of 60 steps after a warm-up
# missed whole runs by -6% to +52% (likely: the hardest rays, replayed late in a run, carry the most
# samples), so the identity pairs, never run whole, take their 60-step timing times the mean
# whole-run excess of their student's column (x1.10 to x1.40; x1.03 for MLP students, at 512 rays).
# Measured before the teacher taught 4096 rays at a time (see TEACHER_RAYS), which made most MLP
# students' steps 17-36% cheaper (voxels -> mlp's barely): their runs ended at 153-238 s in stop 24
# and 128-186 s on stop 25's faster CPU day. Voxel and hash-grid students' entries were then
# scaled by the ratio of 100-step timings with and without the fused Adam step and the faster hash
# encoding (x0.50 to x0.78, stop 26; voxels -> hashgrid x0.49 with its 128 samples per diagonal);
# every other pair's ratio lay within the timings' noise (x0.86 to x1.19, the same pair's timing
# moving by 10% between runs), so its entry stands.
STEP_SECONDS = {
    ("mlp", "mlp"): 0.0215, ("mlp", "hashgrid"): 0.0637, ("mlp", "tensorf-vm"): 0.052,
    ("mlp", "tensorf-cp"): 0.095, ("mlp", "voxels"): 0.0903,
    ("hashgrid", "mlp"): 0.052, ("hashgrid", "hashgrid"): 0.342, ("hashgrid", "tensorf-vm"): 0.207,
    ("hashgrid", "tensorf-cp"): 0.236, ("hashgrid", "voxels"): 0.213,
    ("tensorf-vm", "mlp"): 0.0272, ("tensorf-vm", "hashgrid"): 0.106, ("tensorf-vm", "tensorf-vm"): 0.138,
    ("tensorf-vm", "tensorf-cp"): 0.110, ("tensorf-vm", "voxels"): 0.110,
    ("tensorf-cp", "mlp"): 0.0206, ("tensorf-cp", "hashgrid"): 0.105, ("tensorf-cp", "tensorf-vm"): 0.077,
    ("tensorf-cp", "tensorf-cp"): 0.100, ("tensorf-cp", "voxels"): 0.0919,
    ("voxels", "mlp"): 0.0295, ("voxels", "hashgrid"): 0.130, ("voxels", "tensorf-vm"): 0.133,
    ("voxels", "tensorf-cp"): 0.211, ("voxels", "voxels"): 0.157,
}
BUDGET_SECONDS = 240.0
# a default run also stops here, its schedule compressed to end there, so that a machine slower than
# the reference (stop 22's ran the same steps 30-50% slower) still converts in under five minutes
TIME_LIMIT_SECONDS = 285.0
# past the most steps, the cheapest pairs gain little and should stay quick; MLP students, the
# slowest learners, take small steps and still gain past 5000 (voxels -> mlp at 512 rays: -1.51 dB
# at 4000 steps of 1024 rays, -1.36 at 7000 of 512)
FEWEST_STEPS, MOST_STEPS = 900, 10000
# a splat teacher (outside the table: it renders its views first) and a hash-grid student, 4096
# rays a step, pixels alone: -0.96 dB against the splats' test PSNR at 1200 steps, -0.93 at 1800
SPLAT_TEACHER_STEPS = 1800


def step_seconds(teacher: str, student: str) -> float:
    """Measured seconds per step of `teacher` -> `student` architectures on the reference CPU."""
    return STEP_SECONDS[teacher, student]


def default_time_limit(teacher: str, student: str) -> float | None:
    """Seconds after which a run of `default_steps` ends: none where they are not from the table."""
    return TIME_LIMIT_SECONDS if (teacher, student) in STEP_SECONDS else None


def default_steps(teacher: str, student: str) -> int:
    """Steps (a multiple of 100) for `teacher` -> `student` architectures at default settings."""
    if (teacher, student) not in STEP_SECONDS:
        return SPLAT_TEACHER_STEPS
    steps = int(BUDGET_SECONDS / step_seconds(teacher, student)) // 100 * 100
    return min(max(steps, FEWEST_STEPS), MOST_STEPS)
